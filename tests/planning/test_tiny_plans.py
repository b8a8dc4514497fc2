"""Tiny plans: caps, divisibility, consistent stage lists, shared preprocessed data, and a network that runs."""
from __future__ import annotations

import json
from math import prod
from pathlib import Path

import pytest
import torch

from nnunet_fracture.environment import EnvironmentNotConfigured
from nnunet_fracture.planning.tiny_plans import tiny_plans, write_tiny_plans
from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, install


@pytest.fixture
def dataset(tiny_dataset_cache: Path, nnunet_env: dict[str, Path]) -> Path:
    """The preprocessed dataset folder inside this test's own nnUNet_preprocessed."""
    install(tiny_dataset_cache, nnunet_env)
    return nnunet_env["nnUNet_preprocessed"] / DATASET_NAME


def _config(n_stages_strides: list[list[int]], patch: list[int], **extra) -> dict:
    n = len(n_stages_strides)
    dim = len(patch)
    return {"data_identifier": "nnUNetPlans_3d_fullres", "batch_size": 2, "patch_size": patch,
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": n, "features_per_stage": [min(32 * 2 ** s, 320) for s in range(n)],
                                "kernel_sizes": [[3] * dim] * n, "strides": n_stages_strides,
                                "n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1)}},
            **extra}


def _check_consistent(config: dict, max_features: int, max_patch: int) -> None:
    arch = config["architecture"]["arch_kwargs"]
    n = arch["n_stages"]
    assert len(arch["features_per_stage"]) == len(arch["kernel_sizes"]) == len(arch["strides"]) == n
    assert len(arch["n_conv_per_stage"]) == n and len(arch["n_conv_per_stage_decoder"]) == n - 1
    assert max(arch["features_per_stage"]) <= max_features
    for axis, edge in enumerate(config["patch_size"]):
        pooling = prod(s[axis] for s in arch["strides"])
        assert edge <= max_patch and edge % pooling == 0, (config["patch_size"], arch["strides"])


@pytest.mark.parametrize("strides, patch, max_patch, expected_stages, expected_patch", [
    # isotropic 3 stages; 22 and 30 are rounded down to multiples of the total pooling 4
    ([[1, 1, 1], [2, 2, 2], [2, 2, 2]], [22, 40, 30], 32, 3, [20, 32, 28]),
    # nnU-Net-like anisotropic 6 stages: 32^3 keeps a >= 4 bottleneck only up to 4 stages (pooling 4, 8, 8)
    ([[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]], [64, 128, 128], 32, 4, [32, 32, 32]),
    # a tiny cap: a single stage, patch simply capped
    ([[1, 1, 1], [2, 2, 2]], [24, 24, 24], 6, 1, [6, 6, 6]),
    # 2d
    ([[1, 1], [2, 2], [2, 2], [2, 2]], [48, 40], 32, 4, [32, 32]),
])
def test_stages_and_patch(strides, patch, max_patch, expected_stages, expected_patch):
    plans = {"configurations": {"c": _config(strides, patch)}}
    out = tiny_plans(plans, max_features=16, max_patch=max_patch, batch_size=3)["configurations"]["c"]
    arch = out["architecture"]["arch_kwargs"]
    assert arch["n_stages"] == expected_stages
    assert out["patch_size"] == expected_patch
    assert out["batch_size"] == 3
    assert arch["features_per_stage"] == [4, 8, 16, 16, 16, 16][:expected_stages]
    assert arch["strides"] == strides[:expected_stages]
    _check_consistent(out, 16, max_patch)
    assert plans["configurations"]["c"]["patch_size"] == patch  # input untouched


def test_feature_progression_follows_max_features():
    plans = {"configurations": {"c": _config([[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], [64, 64, 64])}}
    arch = tiny_plans(plans, max_features=32, max_patch=64)["configurations"]["c"]["architecture"]["arch_kwargs"]
    assert arch["features_per_stage"] == [8, 16, 32, 32]


def test_lowres_and_inheriting_configurations():
    strides = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    plans = {"configurations": {
        "3d_fullres": _config(strides, [96, 96, 96]),
        "3d_lowres": _config(strides, [64, 64, 64], data_identifier="nnUNetPlans_3d_lowres",
                             next_stage="3d_cascade_fullres"),
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
        "3d_bigpatch": {"inherits_from": "3d_fullres", "patch_size": [128, 128, 128]},
    }}
    out = tiny_plans(plans, max_features=16, max_patch=32)["configurations"]
    for name in ("3d_fullres", "3d_lowres", "3d_bigpatch"):
        _check_consistent(out[name], 16, 32)
        assert out[name]["patch_size"] == [32, 32, 32]
    assert out["3d_lowres"]["data_identifier"] == "nnUNetPlans_3d_lowres"
    assert out["3d_cascade_fullres"] == plans["configurations"]["3d_cascade_fullres"]  # inherits the tiny parent
    assert out["3d_bigpatch"]["inherits_from"] == "3d_fullres"


def test_missing_parent_is_reported():
    plans = {"configurations": {"x": {"inherits_from": "nope", "patch_size": [8, 8, 8]}}}
    with pytest.raises(ValueError, match="inherits from 'nope'"):
        tiny_plans(plans)


@pytest.mark.parametrize("reference", [str(DATASET_ID), DATASET_NAME])
def test_written_plans_reuse_preprocessed_data(dataset: Path, reference: str):
    path = write_tiny_plans(reference, max_features=16, max_patch=16, batch_size=2)
    assert path == dataset / "nnUNetPlansTiny.json"
    source, tiny = (json.loads((dataset / f).read_text(encoding="utf-8")) for f in ("nnUNetPlans.json", path.name))
    assert tiny["plans_name"] == "nnUNetPlansTiny"
    for name, config in tiny["configurations"].items():
        assert config["data_identifier"] == source["configurations"][name]["data_identifier"]
        _check_consistent(config, 16, 16)
        assert config["batch_size"] == 2
    assert (dataset / tiny["configurations"]["3d_fullres"]["data_identifier"]).is_dir()
    # everything else is the source's
    strip = ("plans_name", "configurations")
    assert {k: v for k, v in tiny.items() if k not in strip} == {k: v for k, v in source.items() if k not in strip}


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_network_builds_and_runs_on_a_patch(dataset: Path, configuration: str):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    path = write_tiny_plans(str(DATASET_ID), plans_name="nnUNetPlansTinier", max_features=8, max_patch=16)
    manager = PlansManager(str(path)).get_configuration(configuration)
    network = get_network_from_plans(manager.network_arch_class_name, manager.network_arch_init_kwargs,
                                     manager.network_arch_init_kwargs_req_import, 1, 2, deep_supervision=False)
    assert max(p.shape[0] for n, p in network.named_parameters() if n.endswith("weight") and p.ndim > 1) <= 8
    with torch.no_grad():
        out = network(torch.zeros(1, 1, *manager.patch_size))
    assert out.shape == (1, 2, *manager.patch_size)


def test_errors_are_explained(dataset: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(FileNotFoundError, match="nnUNetv2_plan_and_preprocess"):
        write_tiny_plans(str(DATASET_ID), source_plans="nnUNetResEncUNetMPlans")
    with pytest.raises(FileNotFoundError, match="nnUNetv2_plan_and_preprocess -d 654"):
        write_tiny_plans("654")
    with pytest.raises(ValueError, match="max_patch"):
        write_tiny_plans(str(DATASET_ID), max_patch=0)
    with pytest.raises(ValueError, match="must differ"):
        write_tiny_plans(str(DATASET_ID), plans_name="nnUNetPlans")
    # a dataset replaced under a new name leaves its old preprocessed folder: preprocessing again cannot fix that
    (dataset.parent / f"Dataset{DATASET_ID:03d}_RenamedSince").mkdir()
    with pytest.raises(FileExistsError, match="More than one dataset name found.*Fix: remove the folders"):
        write_tiny_plans(str(DATASET_ID))
    monkeypatch.delenv("nnUNet_preprocessed")
    with pytest.raises(EnvironmentNotConfigured, match="export nnUNet_preprocessed="):
        write_tiny_plans(str(DATASET_ID))


def test_max_patch_decides_the_number_of_stages(dataset: Path):
    small = json.loads(write_tiny_plans(str(DATASET_ID), plans_name="A", max_patch=8).read_text(encoding="utf-8"))
    large = json.loads(write_tiny_plans(str(DATASET_ID), plans_name="B", max_patch=24).read_text(encoding="utf-8"))
    small, large = (p["configurations"]["3d_fullres"] for p in (small, large))
    assert (small["patch_size"], small["architecture"]["arch_kwargs"]["n_stages"]) == ([8, 8, 8], 2)
    assert (large["patch_size"], large["architecture"]["arch_kwargs"]["n_stages"]) == ([24, 24, 24], 3)
