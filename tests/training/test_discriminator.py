"""The adversarial trainer's discriminator: widths from the settings, one update per step, its checkpoint state."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunet_fracture.losses.adversarial import AdversarialSegmentationLoss
from nnunet_fracture.training.discriminator import DiscriminatorUpdates, build_discriminator


def test_widths_double_per_stage_up_to_8_times():
    d = build_discriminator(1, 2, 3, features=4, stages=5)
    convs = [m for m in d.layers if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [4, 8, 16, 32, 32, 1] and convs[0].in_channels == 3
    assert isinstance(build_discriminator(1, 2, 2, 4, 2).layers[0], nn.Conv2d)
    with pytest.raises(ValueError, match="2D or 3D, got 1 spatial axes"):
        build_discriminator(1, 2, 1, 4, 2)


def updates() -> tuple[AdversarialSegmentationLoss, DiscriminatorUpdates]:
    torch.manual_seed(0)
    loss = AdversarialSegmentationLoss(lambda output, target: output.sum() * 0, build_discriminator(1, 2, 2, 4, 2), 1.0)
    return loss, DiscriminatorUpdates(loss, lr=1e-2, device=torch.device("cpu"))


def test_a_step_updates_d_on_the_last_pair_only():
    loss, d = updates()
    assert d.step() is None  # no training step yet
    logits = torch.randn(2, 2, 16, 16, requires_grad=True)
    target = torch.randint(0, 2, (2, 1, 16, 16))
    loss(logits, target, image=torch.randn(2, 1, 16, 16)).backward()
    before = [p.detach().clone() for p in loss.discriminator.parameters()]
    d_loss = d.step()
    assert d_loss > 0 and any(not torch.equal(a, b) for a, b in zip(before, loss.discriminator.parameters()))
    assert d.step() is None


def test_state_round_trip():
    loss, d = updates()
    loss(torch.randn(1, 2, 8, 8, requires_grad=True), torch.randint(0, 2, (1, 1, 8, 8)), image=torch.randn(1, 1, 8, 8))
    d.step()
    state = d.state_dict()
    other_loss, other = updates()
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(loss.discriminator.parameters(),
                                                  other_loss.discriminator.parameters()))
    assert other.optimizer.state_dict()["state"].keys() == d.optimizer.state_dict()["state"].keys()
