"""nnUNetTrainerPresentDice in-process on the tiny sphere dataset, and through the stock commands (slow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

from nnunet_fracture.losses import PresentDiceLoss, RegionAndPixelLoss
from nnunet_fracture.stock_commands import run_stock
from nnunet_fracture.trainers import nnUNetTrainerPresentDice
from nnunet_fracture.training.settings import ENV_VAR
from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, quiet_env
from trainer_helpers import make_trainer


@pytest.fixture
def dataset(mask_dataset: Path) -> Path:
    return mask_dataset


def test_loss_is_present_dice_plus_nnunet_cross_entropy(dataset, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = make_trainer(nnUNetTrainerPresentDice, dataset)
    trainer.initialize()
    assert isinstance(trainer.loss, DeepSupervisionWrapper)
    assert trainer.loss.weight_factors[0] > trainer.loss.weight_factors[1]  # nnU-Net's 1 / 2**i scale weights
    compound = trainer.loss.loss
    assert isinstance(compound, RegionAndPixelLoss) and isinstance(compound.pixel, RobustCrossEntropyLoss)
    dice = compound.region
    assert isinstance(dice, PresentDiceLoss) and dice.activation == "softmax" and not dice.include_background
    assert dice.batch == trainer.configuration_manager.batch_dice and dice.smooth == 1e-5
    batch = next(trainer.get_dataloaders()[0])
    assert np.isfinite(trainer.train_step(batch)["loss"])


@pytest.mark.slow
def test_stock_train_and_predict(dataset, nnunet_env, tmp_path):
    env = quiet_env()
    env[ENV_VAR] = "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 final_validation=false"
    log = tmp_path / "commands.log"
    run_stock(["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", "nnUNetTrainerPresentDice", "-p",
               "nnUNetPlansTiny", "-device", "cpu"], log, env)
    images = tmp_path / "images"
    images.mkdir()
    (images / "case0_0000.nii.gz").symlink_to(nnunet_env["nnUNet_raw"] / DATASET_NAME / "imagesTr" / "case0_0000.nii.gz")
    run_stock(["nnUNetv2_predict", "-i", images, "-o", tmp_path / "pred", "-d", str(DATASET_ID), "-c", "3d_fullres",
               "-f", "0", "-tr", "nnUNetTrainerPresentDice", "-p", "nnUNetPlansTiny", "-device", "cpu",
               "--save_probabilities", "--disable_tta", "-npp", "1", "-nps", "1"], log, env)
    assert np.load(tmp_path / "pred" / "case0.npz")["probabilities"].shape == (2, 24, 24, 24)
