"""nnUNetTrainerAdversarial in-process on the tiny sphere dataset (its loss, a step of both networks, D in the
checkpoint), and through the stock commands (slow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_fracture.losses import AdversarialSegmentationLoss
from nnunet_fracture.trainers import nnUNetTrainerAdversarial
from nnunet_fracture.training.settings import ENV_VAR
from trainer_helpers import make_trainer, stock_train_and_predict


@pytest.fixture
def trainer(mask_dataset: Path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "lambda_adversarial=0.2 adversarial_start=0 discriminator_features=4 "
                                "discriminator_stages=2")
    trainer = make_trainer(nnUNetTrainerAdversarial, mask_dataset)
    trainer.initialize()
    return trainer


def test_the_loss_wraps_nnunets_and_both_networks_learn(trainer):
    assert isinstance(trainer.loss, AdversarialSegmentationLoss) and trainer.loss.weight == 0.2
    assert isinstance(trainer.loss.task_loss, DeepSupervisionWrapper)  # nnU-Net's own Dice + CE
    d_before = [p.detach().clone() for p in trainer.loss.discriminator.parameters()]
    g_before = [p.detach().clone() for p in trainer.network.parameters()]
    result = trainer.train_step(next(trainer.get_dataloaders()[0]))
    assert np.isfinite(result["loss"]) and result["discriminator_loss"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(d_before, trainer.loss.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, trainer.network.parameters()))
    assert trainer.loss is not None and trainer.loss.pending is None  # the pair was used by D's step


def test_the_term_and_d_wait_for_the_start_epoch(mask_dataset, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=4 lambda_adversarial=0.2 discriminator_features=4 discriminator_stages=2")
    trainer = make_trainer(nnUNetTrainerAdversarial, mask_dataset)  # adversarial_start 0.5: from epoch 2 on
    trainer.initialize()
    trainer.on_train_epoch_start()
    d_before = [p.detach().clone() for p in trainer.loss.discriminator.parameters()]
    assert trainer.loss.weight == 0.0
    assert np.isnan(trainer.train_step(next(trainer.get_dataloaders()[0]))["discriminator_loss"])
    assert all(torch.equal(a, b) for a, b in zip(d_before, trainer.loss.discriminator.parameters()))
    trainer.current_epoch = 2
    trainer.on_train_epoch_start()
    assert trainer.loss.weight == 0.2
    assert trainer.train_step(next(trainer.get_dataloaders()[0]))["discriminator_loss"] > 0


def test_the_discriminator_travels_in_the_checkpoint(trainer, mask_dataset, tmp_path):
    trainer.train_step(next(trainer.get_dataloaders()[0]))
    trainer.save_checkpoint(str(tmp_path / "checkpoint.pth"))
    fresh = make_trainer(nnUNetTrainerAdversarial, mask_dataset)
    fresh.load_checkpoint(str(tmp_path / "checkpoint.pth"))
    assert all(torch.equal(a, b) for a, b in zip(trainer.loss.discriminator.parameters(),
                                                  fresh.loss.discriminator.parameters()))
    assert fresh.discriminator_updates.optimizer.state_dict()["state"]


@pytest.mark.slow
def test_stock_train_and_predict(mask_dataset, nnunet_env, tmp_path):
    assert stock_train_and_predict("nnUNetTrainerAdversarial", nnunet_env, tmp_path).shape == (2, 24, 24, 24)
