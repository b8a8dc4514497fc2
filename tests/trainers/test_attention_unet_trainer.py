"""nnUNetTrainerAttentionUNet and nnUNetTrainerWeakBBoxAttention: the attention U-Net built from tiny plans (2d and
3d_fullres), a real training step in-process, and stock nnUNetv2_train -> nnUNetv2_predict -> nnunet-fracture
attention-maps end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_fracture.cli import main
from nnunet_fracture.image_geometry import geometry_mismatch
from nnunet_fracture.losses import WeakBoxLoss
from nnunet_fracture.networks.attention_unet import AttentionUNet, ResidualEncoderAttentionUNet
from nnunet_fracture.trainers import nnUNetTrainerAttentionUNet, nnUNetTrainerWeakBBoxAttention
from nnunet_fracture.trainers.attention_unet import attention_network_class
from nnunet_fracture.training.settings import ENV_VAR
from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, quiet_env
from stock_entry import run_entry_point
from weak_box_tiny_dataset import DATASETS
from trainer_helpers import make_trainer

SHORT_SCHEDULE = "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 final_validation=false"


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_builds_the_attention_unet_from_tiny_plans(mask_dataset: Path, configuration: str):
    # the stock planner writes a 2d configuration too; only 3d_fullres is preprocessed, and initialize() only asks
    # the data folder for its file format, so the 2d trainer is pointed at the 3d data
    plans = json.loads((mask_dataset / "nnUNetPlansTiny.json").read_text(encoding="utf-8"))
    data_folder = mask_dataset / plans["configurations"][configuration]["data_identifier"]
    if not data_folder.exists():
        data_folder.symlink_to(mask_dataset / plans["configurations"]["3d_fullres"]["data_identifier"])
    trainer = make_trainer(nnUNetTrainerAttentionUNet, mask_dataset, configuration)
    trainer.initialize()
    network = trainer.network
    patch = tuple(trainer.configuration_manager.patch_size)
    assert isinstance(network, AttentionUNet) and len(patch) == (2 if configuration == "2d" else 3)
    arch = trainer.configuration_manager.network_arch_init_kwargs
    assert [len(network.decoder.attention_gates), network.encoder.output_channels] == \
        [arch["n_stages"] - 1, arch["features_per_stage"]]
    network.keep_attention_maps = True
    out = network(torch.randn(2, 1, *patch))
    scales = trainer._get_deep_supervision_scales()
    assert isinstance(out, list) and len(out) == len(scales)
    for logits, scale in zip(out, scales):
        assert logits.shape == (2, 2, *(round(p * s) for p, s in zip(patch, scale)))  # background, fracture
    assert len(network.attention_maps) == len(scales)
    assert all(0 <= m.min() and m.max() <= 1 for m in network.attention_maps)
    trainer.set_deep_supervision_enabled(False)
    network.eval()
    with torch.no_grad():
        assert type(network(torch.randn(1, 1, *patch))) is torch.Tensor


def test_build_network_architecture_is_a_classmethod_as_the_predictor_calls_it(mask_dataset: Path):
    plans = json.loads((mask_dataset / "nnUNetPlansTiny.json").read_text(encoding="utf-8"))
    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    network = nnUNetTrainerAttentionUNet.build_network_architecture(manager, configuration, 1, 2,
                                                                   enable_deep_supervision=False)
    assert isinstance(network, AttentionUNet) and network.decoder.deep_supervision is False
    # the live arch_kwargs of the plans are not modified
    assert configuration.network_arch_init_kwargs == plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]


def test_training_step_and_deep_supervision_switch(mask_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = make_trainer(nnUNetTrainerAttentionUNet, mask_dataset)
    trainer.initialize()
    train_gen, _ = trainer.get_dataloaders()
    before = [g.psi.weight.detach().clone() for g in trainer.network.decoder.attention_gates]
    result = trainer.train_step(next(train_gen))
    assert np.isfinite(result["loss"])
    after = [g.psi.weight.detach() for g in trainer.network.decoder.attention_gates]
    assert any(not torch.equal(b, a) for b, a in zip(before, after))  # the gates learn


def test_weak_box_combination_builds_one_sigmoid_channel(box_dataset: Path):
    trainer = make_trainer(nnUNetTrainerWeakBBoxAttention, box_dataset)
    trainer.initialize()
    assert isinstance(trainer.network, AttentionUNet) and isinstance(trainer.loss, WeakBoxLoss)
    assert trainer.network.decoder.num_classes == 1
    trainers = [c.__name__ for c in type(trainer).__mro__ if c.__name__.startswith("nnUNetTrainer")]  # not mixins
    assert trainers[:4] == [
        "nnUNetTrainerWeakBBoxAttention", "nnUNetTrainerWeakBBox", "nnUNetTrainerAttentionUNet",
        "nnUNetTrainerFracture"]


def test_plans_network_mapping_and_refusal():
    assert attention_network_class("dynamic_network_architectures.architectures.unet.PlainConvUNet").endswith(
        ".AttentionUNet")
    assert attention_network_class("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet") == \
        f"{ResidualEncoderAttentionUNet.__module__}.ResidualEncoderAttentionUNet"
    with pytest.raises(RuntimeError, match=r"PlainConvUNet or ResidualEncoderUNet.*my\.Net.*Fix: "):
        attention_network_class("my.Net", "plans X")


# --- stock commands end to end ----------------------------------------------------------------------------------------
def _train_and_predict(trainer: str, dataset_id: int, name: str, nnunet_env, tmp_path: Path, case: str,
                       channels: int) -> Path:
    env = quiet_env()
    env[ENV_VAR] = SHORT_SCHEDULE
    log = tmp_path / "commands.log"
    run_entry_point(["nnUNetv2_train", str(dataset_id), "3d_fullres", "0", "-tr", trainer, "-p", "nnUNetPlansTiny",
                     "-device", "cpu"], log, env)
    model = nnunet_env["nnUNet_results"] / name / f"{trainer}__nnUNetPlansTiny__3d_fullres"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    images = tmp_path / "images"
    images.mkdir()
    (images / f"{case}_0000.nii.gz").symlink_to(nnunet_env["nnUNet_raw"] / name / "imagesTr" / f"{case}_0000.nii.gz")
    out = tmp_path / "predicted"
    run_entry_point(["nnUNetv2_predict", "-i", images, "-o", out, "-d", str(dataset_id), "-c", "3d_fullres",
                     "-f", "0", "-tr", trainer, "-p", "nnUNetPlansTiny", "-device", "cpu", "--save_probabilities",
                     "--disable_tta"], log, env)
    probabilities = np.load(out / f"{case}.npz")["probabilities"]
    assert probabilities.shape == (channels, 24, 24, 24)
    assert 0 <= probabilities.min() and probabilities.max() <= 1
    return model


def _check_attention_maps(model: Path, raw_image: Path, out: Path, capsys) -> None:
    assert main(["attention-maps", str(model), str(raw_image), "--fold", "0", "--out", str(out),
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    provenance = json.loads((out / "attention_maps.json").read_text(encoding="utf-8"))
    levels = provenance["levels"]
    assert len(levels) >= 1 and provenance["network"] == "AttentionUNet"
    ct = sitk.ReadImage(str(raw_image))
    for entry in levels:
        image = sitk.ReadImage(str(out / entry["file"]))
        assert geometry_mismatch(ct, image) is None
        assert image.GetSize() == ct.GetSize() and image.GetOrigin() == ct.GetOrigin()
        assert image.GetSpacing() == ct.GetSpacing() and image.GetDirection() == ct.GetDirection()
        values = sitk.GetArrayFromImage(image)
        assert values.dtype == np.float32 and 0 <= values.min() and values.max() <= 1
        assert (out / entry["png"]).stat().st_size > 0


@pytest.mark.slow
def test_stock_train_predict_and_attention_maps_mask_dataset(mask_dataset: Path, nnunet_env, tmp_path: Path, capsys):
    model = _train_and_predict("nnUNetTrainerAttentionUNet", DATASET_ID, DATASET_NAME, nnunet_env, tmp_path, "case0",
                               channels=2)
    _check_attention_maps(model, nnunet_env["nnUNet_raw"] / DATASET_NAME / "imagesTr" / "case0_0000.nii.gz",
                          tmp_path / "attention", capsys)


@pytest.mark.slow
def test_stock_train_predict_and_attention_maps_weak_boxes(box_dataset: Path, nnunet_env, tmp_path: Path, capsys):
    dataset_id, name = DATASETS["box"]
    model = _train_and_predict("nnUNetTrainerWeakBBoxAttention", dataset_id, name, nnunet_env, tmp_path, "case1",
                               channels=1)
    assert "box-aware validation" in (tmp_path / "commands.log").read_text(encoding="utf-8")
    _check_attention_maps(model, nnunet_env["nnUNet_raw"] / name / "imagesTr" / "case1_0000.nii.gz",
                          tmp_path / "attention", capsys)
