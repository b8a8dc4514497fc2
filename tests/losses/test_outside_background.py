import math

import pytest
import torch

from nnunet_fracture.losses import OutsideBackgroundLoss, find_bags


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_mean_bce_against_zero_over_outside_voxels():
    logits = torch.tensor([0.0, logit(0.8), logit(0.1)]).reshape(1, 1, 3)
    numbers = torch.tensor([0, 0, 1], dtype=torch.int16).reshape(1, 1, 3)
    expected = (-math.log(1 - 0.5) - math.log(1 - 0.8)) / 2  # the inside voxel does not count
    assert OutsideBackgroundLoss()(logits, numbers).item() == pytest.approx(expected, rel=1e-6)
    assert OutsideBackgroundLoss()(logits, find_bags(numbers)).item() == pytest.approx(expected, rel=1e-6)


def test_mean_runs_over_all_outside_voxels_of_the_batch():
    # sample 0: one outside voxel with P = 0.8; sample 1: three with P = 0.5
    logits = torch.tensor([[logit(0.8), 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 3.0]]).reshape(2, 1, 4)
    numbers = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 2]]).reshape(2, 1, 4)
    expected = (-math.log(0.2) + 3 * math.log(2)) / 4
    assert OutsideBackgroundLoss()(logits, numbers).item() == pytest.approx(expected, rel=1e-6)


def test_gradient_pushes_outside_probabilities_down_and_ignores_inside():
    logits = torch.tensor([0.0, logit(0.8), 2.0]).reshape(1, 1, 3).requires_grad_(True)
    numbers = torch.tensor([0, 0, 1]).reshape(1, 1, 3)
    OutsideBackgroundLoss()(logits, numbers).backward()
    # d softplus(x) / dx = sigmoid(x), divided by the 2 outside voxels
    assert logits.grad.flatten().tolist() == pytest.approx([0.25, 0.4, 0.0], abs=1e-6)


def test_no_outside_voxel_gives_a_graph_connected_zero():
    logits = torch.randn(1, 1, 2, 2, requires_grad=True)
    loss = OutsideBackgroundLoss()(logits, torch.ones(1, 1, 2, 2, dtype=torch.int16))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_half_precision_gives_float32():
    loss = OutsideBackgroundLoss()(torch.full((1, 1, 2, 2, 2), 8.0, dtype=torch.float16),
                                   torch.zeros(1, 1, 2, 2, 2, dtype=torch.int16))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(math.log(1 + math.exp(8.0)), rel=1e-5)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"box_numbers shape \(1, 1, 4\) differs from logits shape \(1, 1, 3\)"):
        OutsideBackgroundLoss()(torch.zeros(1, 1, 3), torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="one sigmoid fracture channel"):
        OutsideBackgroundLoss()(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
