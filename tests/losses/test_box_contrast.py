import math

import pytest
import torch

from nnunet_fracture.losses import BoxContrastLoss


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def row(*values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype).reshape(1, 1, -1)


# outside P = 0.2, 0.8; box P = 0.5, 0.6
LOGITS = row(logit(0.2), logit(0.8), 0.0, logit(0.6))
NUMBERS = row(0, 0, 1, 1, dtype=torch.int16)


def test_max_mode_by_hand():
    # max(0, 0.8 - 0.6 + 0.3)
    assert BoxContrastLoss(0.3, "max")(LOGITS, NUMBERS).item() == pytest.approx(0.5, rel=1e-5)


def test_mean_mode_by_hand():
    # max(0, 0.5 - 0.55 + 0.3)
    assert BoxContrastLoss(0.3, "mean")(LOGITS, NUMBERS).item() == pytest.approx(0.25, rel=1e-5)


def test_satisfied_margin_gives_zero():
    logits = row(logit(0.1), logit(0.9))
    assert BoxContrastLoss(0.3)(logits, row(0, 1, dtype=torch.int16)).item() == 0.0


def test_each_bag_is_compared_with_the_background_of_its_own_sample():
    # sample 0: outside max 0.8, box 1 max 0.6 -> 0.5; sample 1: outside max 0.2, box 1 max 0.6 -> 0.0 (hinge)
    logits = torch.tensor([[logit(0.8), logit(0.6)], [logit(0.2), logit(0.6)]]).reshape(2, 1, 2)
    numbers = torch.tensor([[0, 1], [0, 1]], dtype=torch.int16).reshape(2, 1, 2)
    assert BoxContrastLoss(0.3)(logits, numbers).item() == pytest.approx((0.5 + 0.0) / 2, rel=1e-5)


def test_bags_of_a_sample_without_outside_voxels_are_skipped():
    # sample 0 is inside box 1 everywhere; only sample 1's bag counts: max(0, 0.5 - 0.6 + 0.3)
    logits = torch.tensor([[-4.0, -4.0], [0.0, logit(0.6)]]).reshape(2, 1, 2).requires_grad_(True)
    numbers = torch.tensor([[1, 1], [0, 2]], dtype=torch.int16).reshape(2, 1, 2)
    loss = BoxContrastLoss(0.3)(logits, numbers)
    assert loss.item() == pytest.approx(0.2, rel=1e-5)
    loss.backward()
    assert torch.equal(logits.grad[0], torch.zeros(1, 2))


def test_no_pair_gives_a_graph_connected_zero():
    for numbers in (torch.zeros(1, 1, 2, 2, dtype=torch.int16), torch.ones(1, 1, 2, 2, dtype=torch.int16)):
        logits = torch.randn(1, 1, 2, 2, requires_grad=True)
        loss = BoxContrastLoss()(logits, numbers)
        assert loss.item() == 0.0
        loss.backward()
        assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_max_mode_gradient_reaches_only_the_two_argmax_voxels():
    logits = LOGITS.clone().requires_grad_(True)
    BoxContrastLoss(0.3, "max")(logits, NUMBERS).backward()
    # d sigmoid / dx = P (1 - P): +0.16 at the outside arg max (0.8), -0.24 at the box arg max (0.6)
    assert logits.grad.flatten().tolist() == pytest.approx([0.0, 0.16, 0.0, -0.24], abs=1e-6)


def test_half_precision_gives_float32():
    assert BoxContrastLoss()(LOGITS.half(), NUMBERS).dtype == torch.float32


def test_argument_errors():
    with pytest.raises(ValueError, match=r"margin must be a finite number >= 0, got -0.1"):
        BoxContrastLoss(margin=-0.1)
    with pytest.raises(ValueError, match=r"unknown contrast mode 'median'; expected one of 'max', 'mean'"):
        BoxContrastLoss(mode="median")
    with pytest.raises(ValueError, match=r"box_numbers shape \(1, 1, 3\) differs from logits shape \(1, 1, 4\)"):
        BoxContrastLoss()(LOGITS, torch.zeros(1, 1, 3))
