"""nnUNetTrainerSliceLSTM and nnUNetTrainerWeakBBoxSliceLSTM: network from tiny 3d_fullres plans, in-plane
deep-supervision targets, settings recorded in the plans for prediction, the 2d refusal, and stock
nnUNetv2_train / nnUNetv2_predict end to end."""
from __future__ import annotations

import copy
import json
from math import prod
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_fracture.losses import WeakBoxLoss
from nnunet_fracture.networks.slice_lstm import SliceLSTMUNet
from nnunet_fracture.trainers import nnUNetTrainerSliceLSTM, nnUNetTrainerWeakBBoxSliceLSTM
from nnunet_fracture.trainers.slice_lstm import NETWORK
from nnunet_fracture.training.settings import ENV_VAR
from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, quiet_env
from stock_entry import run_entry_point
from weak_box_tiny_dataset import DATASETS
from trainer_helpers import load_plans, make_trainer

SHORT = "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1"


def expected_scales(strides: list[list[int]]) -> list[list[float]]:
    """One scale per decoder output: 1 along the slices, 1 / (in-plane pooling so far) in-plane."""
    return [[1.0] + [1 / prod(s[axis] for s in strides[:k + 1]) for axis in (1, 2)] for k in range(len(strides) - 1)]


def check_batch_fits_outputs(trainer) -> tuple[dict, list]:
    batch = next(trainer.get_dataloaders()[0])
    outputs = trainer.network(batch["data"])
    targets = batch["target"]
    assert isinstance(outputs, list) and len(outputs) == len(targets) == len(trainer._get_deep_supervision_scales())
    for output, target in zip(outputs, targets):
        assert output.shape[0] == target.shape[0] and output.shape[2:] == target.shape[2:]
    assert outputs[0].shape[2:] == batch["data"].shape[2:]
    return batch, outputs


def test_network_from_tiny_3d_plans_with_in_plane_deep_supervision(mask_dataset: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = make_trainer(nnUNetTrainerSliceLSTM, mask_dataset)
    trainer.initialize()
    net = trainer.network
    assert isinstance(net, SliceLSTMUNet) and net.encoder.lstm_stages == (len(net.encoder.output_channels) - 1,)
    strides = trainer.configuration_manager.pool_op_kernel_sizes
    assert any(s[0] > 1 for s in strides)  # the 3D plans pool the slices too; the network must not
    scales = trainer._get_deep_supervision_scales()
    assert scales == expected_scales(strides)  # powers of two: exact
    batch, outputs = check_batch_fits_outputs(trainer)
    assert outputs[-1].shape[2] == batch["data"].shape[2]  # the lowest output still has every slice
    loss = trainer.loss(outputs, batch["target"])
    assert torch.isfinite(loss)
    assert len(trainer.loss.weight_factors) == len(outputs)
    trainer.set_deep_supervision_enabled(False)
    net.eval()
    with torch.no_grad():
        single = net(batch["data"])
    assert isinstance(single, torch.Tensor) and single.shape == (*batch["data"].shape[:1], 2,
                                                                 *batch["data"].shape[2:])
    architecture = trainer.plans_manager.plans["configurations"]["3d_fullres"]["architecture"]
    assert architecture["network_class_name"] == NETWORK
    arch_kwargs = architecture["arch_kwargs"]
    assert arch_kwargs["lstm_levels"] == 1 and arch_kwargs["lstm_hidden_channels"] is None


def test_settings_travel_in_the_plans_to_prediction(mask_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, "lstm_levels=2 lstm_bidirectional=false lstm_hidden_channels=3")
    trainer = make_trainer(nnUNetTrainerSliceLSTM, mask_dataset)
    trainer.initialize()
    n = len(trainer.network.encoder.output_channels)
    assert trainer.network.encoder.lstm_stages == (n - 1, n - 2)
    assert trainer.network.encoder.lstms[str(n - 1)].backward_lstm is None
    # the predictor: plans saved by the trainer, the trainer class, no environment
    monkeypatch.delenv(ENV_VAR)
    saved = PlansManager(json.loads(json.dumps(trainer.plans_manager.plans)))
    rebuilt = nnUNetTrainerSliceLSTM.build_network_architecture(
        saved, saved.get_configuration("3d_fullres"), 1, 2, enable_deep_supervision=False)
    rebuilt.load_state_dict(trainer.network.state_dict())  # strict: the same architecture
    # plans never touched by the trainer fall back to the class defaults
    fresh = PlansManager(load_plans(mask_dataset))
    default = nnUNetTrainerSliceLSTM.build_network_architecture(fresh, fresh.get_configuration("3d_fullres"), 1, 2)
    assert default.encoder.lstm_stages == (n - 1,)


def test_2d_configuration_is_refused_naming_the_fix(mask_dataset: Path):
    plans = load_plans(mask_dataset)
    config = copy.deepcopy(plans["configurations"]["3d_fullres"])
    config["patch_size"] = config["patch_size"][1:]
    config["spacing"] = config["spacing"][1:]
    arch = config["architecture"]["arch_kwargs"]
    arch.update(conv_op="torch.nn.modules.conv.Conv2d", norm_op="torch.nn.modules.instancenorm.InstanceNorm2d",
                kernel_sizes=[k[1:] for k in arch["kernel_sizes"]], strides=[s[1:] for s in arch["strides"]])
    plans["configurations"]["2d"] = config
    with pytest.raises(RuntimeError, match=r"configuration '2d' has 2D patches.*train with 3d_fullres"):
        make_trainer(nnUNetTrainerSliceLSTM, mask_dataset, configuration="2d", plans=plans)
    manager = PlansManager(plans)
    with pytest.raises(RuntimeError, match="3d_fullres"):
        nnUNetTrainerSliceLSTM.build_network_architecture(manager, manager.get_configuration("2d"), 1, 2)


def test_weak_box_combination_keeps_box_numbers_at_in_plane_scales(box_dataset: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert nnUNetTrainerWeakBBoxSliceLSTM._get_deep_supervision_scales is \
        nnUNetTrainerSliceLSTM._get_deep_supervision_scales
    trainer = make_trainer(nnUNetTrainerWeakBBoxSliceLSTM, box_dataset)
    trainer.initialize()
    assert isinstance(trainer.network, SliceLSTMUNet) and isinstance(trainer.loss, WeakBoxLoss)
    assert trainer.network.decoder.num_classes == 1  # one sigmoid region
    assert trainer._get_deep_supervision_scales() == (
        expected_scales(trainer.configuration_manager.pool_op_kernel_sizes))
    batch, outputs = check_batch_fits_outputs(trainer)
    assert all(set(torch.unique(t).tolist()) <= {0, 1, 2} for t in batch["target"])  # box numbers
    loss = trainer.loss(outputs, batch["target"])
    assert torch.isfinite(loss) and loss.item() > 0
    trainer.network.train()
    assert np.isfinite(trainer.train_step(batch)["loss"])
    result = trainer.validation_step(batch)
    assert np.isfinite(result["loss"]) and "box_counts" in result


@pytest.mark.slow
@pytest.mark.parametrize("trainer_name, weak", [("nnUNetTrainerSliceLSTM", None),
                                                ("nnUNetTrainerWeakBBoxSliceLSTM", "box")])
def test_stock_train_and_predict(trainer_name: str, weak: str | None, request: pytest.FixtureRequest,
                                 nnunet_env, tmp_path: Path):
    request.getfixturevalue("box_dataset" if weak else "mask_dataset")  # installs the dataset and tiny plans
    dataset_id, name = DATASETS["box"] if weak else (DATASET_ID, DATASET_NAME)
    env = quiet_env()
    env[ENV_VAR] = SHORT + " final_validation=false"
    log = tmp_path / "commands.log"
    run_entry_point(["nnUNetv2_train", str(dataset_id), "3d_fullres", "0", "-tr", trainer_name, "-p", "nnUNetPlansTiny",
                     "-device", "cpu"], log, env)
    model = nnunet_env["nnUNet_results"] / name / f"{trainer_name}__nnUNetPlansTiny__3d_fullres"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    saved = json.loads((model / "plans.json").read_text(encoding="utf-8"))["configurations"]["3d_fullres"]["architecture"]
    assert saved["network_class_name"] == NETWORK

    images = tmp_path / "images"
    images.mkdir()
    (images / "case0_0000.nii.gz").symlink_to(nnunet_env["nnUNet_raw"] / name / "imagesTr" / "case0_0000.nii.gz")
    out = tmp_path / "predicted"
    env.pop(ENV_VAR)  # prediction rebuilds the network from the saved plans alone
    run_entry_point(["nnUNetv2_predict", "-i", images, "-o", out, "-d", str(dataset_id), "-c", "3d_fullres", "-f", "0",
                     "-tr", trainer_name, "-p", "nnUNetPlansTiny", "-device", "cpu", "--save_probabilities",
                     "--disable_tta"], log, env)
    probabilities = np.load(out / "case0.npz")["probabilities"]
    assert probabilities.shape == ((1,) if weak else (2,)) + (24, 24, 24)
    assert 0 <= probabilities.min() and probabilities.max() <= 1
    assert (out / "case0.nii.gz").is_file()
    if not weak:  # the attention-map export works with the slice-LSTM network's 5D maps
        from nnunet_fracture.inference.attention_maps import export_attention_maps

        provenance = export_attention_maps(model, images / "case0_0000.nii.gz", tmp_path / "attention", device="cpu")
        assert len(list((tmp_path / "attention").glob("attention_level*.nii.gz"))) >= 1, provenance


def test_per_slice_classification_head_attaches(mask_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    """The classification-head trainer in front of the slice-LSTM trainer, pooling the bottleneck
    (b, C, S, h, w) over the in-plane axes only: one class logit per slice."""
    from nnunet_fracture.trainers import nnUNetTrainerSliceLSTMClsHead

    assert nnUNetTrainerSliceLSTMClsHead.cls_pool_axes == (1, 2)  # spatial axes (h, w) of the 5D skips
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = make_trainer(nnUNetTrainerSliceLSTMClsHead, mask_dataset)
    trainer.initialize()
    batch = next(trainer.get_dataloaders()[0])
    trainer.network.train()
    assert np.isfinite(trainer.train_step(batch)["loss"])
    n_slices = batch["data"].shape[2]
    assert trainer.class_logits().shape == (batch["data"].shape[0], 1, n_slices, 1, 1)
    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    with torch.no_grad():
        fused = trainer.network(batch["data"])
    assert isinstance(fused, torch.Tensor) and fused.shape == (batch["data"].shape[0], 2, *batch["data"].shape[2:])
