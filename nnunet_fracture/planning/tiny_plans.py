"""Tiny plans: the default preprocessed data with a tiny network and patch, for CPU smoke runs, tests and demos.

nnU-Net's planners are not pluggable, so the plans file is written directly. Each configuration keeps its
``data_identifier``, so the tiny plans train on the data ``nnUNetv2_plan_and_preprocess`` already wrote.
"""
from __future__ import annotations

import copy
import json
from math import prod
from pathlib import Path

from nnunet_fracture.io.plans_files import plans_file

# arch_kwargs lists with one entry per encoder stage / per decoder stage (PlainConvUNet, ResidualEncoderUNet)
PER_STAGE_KEYS = ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage", "n_blocks_per_stage")
PER_DECODER_STAGE_KEYS = ("n_conv_per_stage_decoder",)
# smallest bottleneck edge kept along a pooled axis (nnU-Net's planners stop pooling at 4 as well)
MIN_BOTTLENECK_EDGE = 4
# keys whose presence in a configuration means it defines (not inherits) its network or sampling
_OWN_KEYS = ("architecture", "patch_size", "batch_size")


def write_tiny_plans(dataset: str, source_plans: str = "nnUNetPlans", plans_name: str = "nnUNetPlansTiny",
                     max_features: int = 16, max_patch: int = 32, batch_size: int = 2) -> Path:
    """Write ``$nnUNet_preprocessed/<dataset>/<plans_name>.json``: ``source_plans`` with a tiny network.

    Per configuration: features per stage ``max_features/4, max_features/2, max_features, max_features, ...``;
    patch edges at most ``max_patch`` and divisible by the total pooling; as many stages as the patch allows
    (bottleneck edge >= 4 along pooled axes); the given batch size. Configurations that only ``inherits_from``
    another take the tiny values from it.

    Args:
        dataset: dataset ID (``"501"``) or name (``"Dataset501_Phantom"``).
        source_plans: plans identifier to start from.
        plans_name: identifier of the written plans (file name and ``plans_name`` inside).
        max_features: largest number of features in any stage.
        max_patch: largest patch edge in voxels.
        batch_size: batch size of every configuration.

    Returns:
        Path of the written plans file.

    Raises:
        EnvironmentNotConfigured: ``nnUNet_preprocessed`` is not set.
        FileNotFoundError: the source plans do not exist (run ``nnUNetv2_plan_and_preprocess`` first).
        FileExistsError: nnU-Net finds the dataset ID under two names
            (:func:`~nnunet_fracture.io.plans_files.plans_file`).
        ValueError: a bad argument, or ``plans_name`` equal to ``source_plans``.
    """
    for name, value in (("max_features", max_features), ("max_patch", max_patch), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if plans_name == source_plans:
        raise ValueError(f"plans_name must differ from source_plans ({source_plans!r}) so the source is kept")
    source = plans_file(dataset, source_plans, f"run nnUNetv2_plan_and_preprocess -d {dataset} (or with "
                        f"-pl/-overwrite_plans_name for '{source_plans}') first")
    plans = json.loads(source.read_text())
    tiny = tiny_plans(plans, max_features=max_features, max_patch=max_patch, batch_size=batch_size)
    tiny["plans_name"] = plans_name
    out = source.with_name(f"{plans_name}.json")
    out.write_text(json.dumps(tiny, indent=4))
    return out


def tiny_plans(plans: dict, max_features: int = 16, max_patch: int = 32, batch_size: int = 2) -> dict:
    """Return a copy of the plans dictionary ``plans`` with every configuration made tiny (see write_tiny_plans)."""
    plans = copy.deepcopy(plans)
    configurations = plans["configurations"]
    for name, config in configurations.items():
        if not any(key in config for key in _OWN_KEYS):
            continue  # inherits everything that matters from its parent, which is made tiny itself
        effective = _resolve(configurations, name)
        config["architecture"] = effective["architecture"]
        arch = config["architecture"]["arch_kwargs"]
        n_stages, patch = _fit_stages(effective["patch_size"], arch["strides"], max_patch)
        for key in PER_STAGE_KEYS:
            if key in arch:
                arch[key] = arch[key][:n_stages]
        for key in PER_DECODER_STAGE_KEYS:
            if key in arch:
                arch[key] = arch[key][:n_stages - 1]
        arch["n_stages"] = n_stages
        arch["features_per_stage"] = [min(max_features, max(1, max_features // 4) * 2 ** s) for s in range(n_stages)]
        config["patch_size"] = patch
        config["batch_size"] = batch_size
    return plans


def _resolve(configurations: dict, name: str) -> dict:
    """The configuration ``name`` with its ``inherits_from`` chain merged in (as nnU-Net's PlansManager does)."""
    config = configurations[name]
    parent = config.get("inherits_from")
    if parent is None:
        return copy.deepcopy(config)
    if parent not in configurations:
        raise ValueError(f"configuration {name!r} inherits from {parent!r}, which the plans do not contain")
    return {**_resolve(configurations, parent), **copy.deepcopy(config)}


def _fit_stages(patch_size: list[int], strides: list[list[int]], max_patch: int) -> tuple[int, list[int]]:
    """Most stages (and the matching patch) such that the capped patch keeps a bottleneck of >= 4 voxels."""
    target = [min(int(p), max_patch) for p in patch_size]
    for n_stages in range(len(strides), 0, -1):
        pooling = [prod(int(s[axis]) for s in strides[:n_stages]) for axis in range(len(target))]
        edges = [t // k for t, k in zip(target, pooling)]
        if n_stages == 1 or all(e >= MIN_BOTTLENECK_EDGE or k == 1 for e, k in zip(edges, pooling)):
            return n_stages, [max(e, 1) * k for e, k in zip(edges, pooling)]
    raise AssertionError("unreachable: one stage always fits")
