"""nnUNetTrainerFocalTversky in-process on the tiny sphere dataset, and through the stock commands (slow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_fracture.losses import FocalLoss, FocalTverskyLoss, RegionAndPixelLoss
from nnunet_fracture.trainers import nnUNetTrainerFocalTversky, nnUNetTrainerFocalTverskyPaper
from nnunet_fracture.training.settings import ENV_VAR
from trainer_helpers import make_trainer, stock_train_and_predict


@pytest.fixture
def dataset(mask_dataset: Path) -> Path:
    return mask_dataset


def test_loss_is_focal_tversky_plus_focal_with_the_plan_defaults(dataset, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = make_trainer(nnUNetTrainerFocalTversky, dataset)
    trainer.initialize()
    assert isinstance(trainer.loss, DeepSupervisionWrapper)
    compound = trainer.loss.loss
    assert isinstance(compound, RegionAndPixelLoss) and isinstance(compound.pixel, FocalLoss)
    ft = compound.region
    assert isinstance(ft, FocalTverskyLoss) and ft.activation == "softmax" and not ft.include_background
    assert (ft.weight_fp, ft.weight_fn, ft.exponent) == pytest.approx((0.3, 0.7, 0.75))
    batch = next(trainer.get_dataloaders()[0])
    assert np.isfinite(trainer.train_step(batch)["loss"])


def test_paper_parameterization_is_reachable(dataset, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    ft = make_trainer(nnUNetTrainerFocalTverskyPaper, dataset)._build_focal_tversky_loss().region
    assert ft.convention == "paper" and (ft.alpha, ft.beta) == (0.7, 0.3)
    assert (ft.weight_fp, ft.weight_fn, ft.exponent) == pytest.approx((0.3, 0.7, 0.75))
    monkeypatch.setenv(ENV_VAR, "ft_convention=paper ft_alpha=0.5 ft_beta=0.2 ft_gamma=2 focal_alpha=0.25 "
                                "weight_focal=0.5")
    loss = make_trainer(nnUNetTrainerFocalTversky, dataset)._build_focal_tversky_loss()
    assert (loss.region.weight_fn, loss.region.weight_fp, loss.region.exponent) == (0.5, 0.2, 0.5)
    assert loss.pixel.alpha == 0.25 and loss.weight_pixel == 0.5


def test_bad_settings_fail_early(dataset, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "ft_convention=monai")
    with pytest.raises(ValueError, match="convention must be one of .* got 'monai'"):
        make_trainer(nnUNetTrainerFocalTversky, dataset)


@pytest.mark.slow
def test_stock_train_and_predict(dataset, nnunet_env, tmp_path):
    assert stock_train_and_predict("nnUNetTrainerFocalTversky", nnunet_env, tmp_path).shape == (2, 24, 24, 24)
