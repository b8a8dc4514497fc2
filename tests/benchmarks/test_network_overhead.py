"""benchmarks/network_overhead.py: the parameter counts its table reports (its lazy imports included)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from nnunet_fracture.losses.adversarial import AdversarialSegmentationLoss
from nnunet_fracture.training.discriminator import DiscriminatorUpdates, build_discriminator

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from network_overhead import ARMS, parameter_count, training_only_parameters  # noqa: E402


def test_parameters_of_the_network_and_of_what_only_trains():
    assert parameter_count(nn.Linear(2, 3)) == 2 * 3 + 3
    assert training_only_parameters(SimpleNamespace()) == 0  # a trainer without a discriminator
    # the adversarial trainer's own objects: a one-stage PatchGAN for 1 CT channel + 2 classes, 2 features
    discriminator = build_discriminator(1, 2, 3, 2, 1)
    loss = AdversarialSegmentationLoss(nn.CrossEntropyLoss(), discriminator, 0.1)
    trainer = SimpleNamespace(discriminator_updates=DiscriminatorUpdates(loss, 2e-4, torch.device("cpu")))
    assert training_only_parameters(trainer) == sum(p.numel() for p in discriminator.parameters()) > 0
    assert ARMS[0] == "nnUNetTrainer" and "nnUNetTrainerAdversarial" in ARMS
