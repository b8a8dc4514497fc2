"""benchmarks/network_overhead.py: the parameter counts its table reports (its lazy imports included)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from network_overhead import ARMS, parameter_count, training_only_parameters  # noqa: E402


def test_parameters_of_the_network_and_of_what_only_trains():
    assert parameter_count(nn.Linear(2, 3)) == 2 * 3 + 3
    assert training_only_parameters(SimpleNamespace()) == 0  # a trainer without a discriminator
    discriminator = nn.Conv3d(2, 4, 3)  # 2 x 4 x 27 weights + 4 biases
    trainer = SimpleNamespace(discriminator_updates=SimpleNamespace(loss=SimpleNamespace(discriminator=discriminator)))
    assert training_only_parameters(trainer) == 2 * 4 * 27 + 4
    assert ARMS[0] == "nnUNetTrainer" and "nnUNetTrainerAdversarial" in ARMS
