"""Focal loss (Lin et al. 2017): hand-computed values, the cross-entropy limit, masks and errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from nnunet_fracture.losses import FocalLoss


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_sigmoid_hand_values():
    x = torch.tensor([0.0, logit(0.8)]).reshape(1, 1, 2)
    y = torch.tensor([1.0, 0.0]).reshape(1, 1, 2)  # p_t = 0.5 and 0.2
    values = FocalLoss(gamma=2.0, activation="sigmoid", reduction="none")(x, y).flatten().tolist()
    assert values == pytest.approx([0.25 * math.log(2), 0.64 * -math.log(0.2)], rel=1e-5)
    weighted = FocalLoss(gamma=2.0, alpha=0.25, activation="sigmoid")(x, y).item()
    assert weighted == pytest.approx((0.25 * 0.25 * math.log(2) + 0.75 * 0.64 * -math.log(0.2)) / 2, rel=1e-5)


def test_softmax_hand_value():
    x = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1)  # p = (0.25, 0.75)
    assert FocalLoss(gamma=2.0)(x, torch.tensor([[[1]]])).item() == pytest.approx(
        0.25 ** 2 * -math.log(0.75), rel=1e-5)
    assert FocalLoss(gamma=2.0)(x, torch.tensor([[[0]]])).item() == pytest.approx(
        0.75 ** 2 * -math.log(0.25), rel=1e-5)


def test_gamma_zero_is_cross_entropy():
    torch.manual_seed(0)
    x, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
    assert FocalLoss(gamma=0.0)(x, labels).item() == pytest.approx(F.cross_entropy(x, labels[:, 0]).item(), rel=1e-5)
    y = (torch.rand(2, 3, 4, 4) > 0.5).float()
    assert FocalLoss(gamma=0.0, activation="sigmoid")(x, y).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(x, y).item(), rel=1e-5)


def test_mask_and_gradients():
    x = torch.tensor([0.0, 40.0, 3.0]).reshape(1, 1, 3).requires_grad_(True)
    y = torch.tensor([1.0, 1.0, 0.0]).reshape(1, 1, 3)
    mask = torch.tensor([1.0, 1.0, 0.0]).reshape(1, 1, 3)
    loss = FocalLoss(gamma=0.5, activation="sigmoid")(x, y, loss_mask=mask)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 ** 0.5 * math.log(2) / 2, rel=1e-4)
    assert torch.isfinite(x.grad).all() and x.grad[0, 0, 2] == 0


def test_argument_errors():
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0, got -1"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match=r"alpha must be None or a number in \[0, 1\], got 1.5"):
        FocalLoss(alpha=1.5)
    with pytest.raises(ValueError, match="activation must be 'softmax' or 'sigmoid', got 'none'"):
        FocalLoss(activation="none")
