"""nnUNetTrainerPresentDice in-process on the tiny sphere dataset, and through the stock commands (slow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

from nnunet_fracture.losses import PresentDiceLoss, RegionAndPixelLoss
from nnunet_fracture.trainers import nnUNetTrainerPresentDice
from nnunet_fracture.training.settings import ENV_VAR
from trainer_helpers import make_trainer, stock_train_and_predict


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
    assert stock_train_and_predict("nnUNetTrainerPresentDice", nnunet_env, tmp_path).shape == (2, 24, 24, 24)
