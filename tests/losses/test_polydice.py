"""PolyDice-1: hand-computed values, the empty-set convention, the Dice limit and finite gradients."""
import math

import numpy as np
import pytest
import torch

from nnunet_fracture.losses import PolyDice1Loss
from nnunet_fracture.losses.polydice import arccos_squared


def probs(*images):
    """``(B, 1, V)`` probabilities, one row per image."""
    return torch.tensor(images, dtype=torch.float64).reshape(len(images), 1, -1)


def raw_loss(**kwargs):
    return PolyDice1Loss(activation="none", include_background=True, **kwargs)


def test_hand_computed_value():
    # p = (1, 0), y = (1, 1): <p,y> = 1, |p|^2 = 1, |y|^2 = 2 -> s = 2/3, cos = 1/sqrt(2), theta = pi/4
    p, y = probs([1.0, 0.0]), probs([1.0, 1.0])
    assert raw_loss()(p, y).item() == pytest.approx(1 / 3 + (2 / 3) * 0.5 * math.pi ** 2 / 16, rel=1e-6)
    assert raw_loss(epsilon=1.0)(p, y).item() == pytest.approx(1 / 3 + math.pi ** 2 / 16, rel=1e-6)


def test_second_hand_computed_value():
    # p = (0.5, 0.5, 0), y = (1, 0, 0): <p,y> = 0.5, |p|^2 = 0.5, |y|^2 = 1 -> s = 2/3, cos = 1/sqrt(2)
    # eps = -0.25: L = 1/3 + 2/3 * 0.25 * pi^2/16
    value = raw_loss()(probs([0.5, 0.5, 0.0]), probs([1.0, 0.0, 0.0]), epsilon=-0.25).item()
    assert value == pytest.approx(1 / 3 + (2 / 3) * 0.25 * math.pi ** 2 / 16, rel=1e-6)


def test_epsilon_per_image():
    p, y = probs([1.0, 0.0], [1.0, 0.0]), probs([1.0, 1.0], [1.0, 1.0])
    values = PolyDice1Loss(activation="none", include_background=True, reduction="none")(
        p, y, epsilon=torch.tensor([0.0, 1.0]))
    assert values.shape == (2, 1)
    assert values[:, 0].tolist() == pytest.approx([1 / 3 + math.pi ** 2 / 48, 1 / 3 + math.pi ** 2 / 16], rel=1e-6)
    mean = raw_loss()(p, y, epsilon=[0.0, 1.0]).item()
    assert mean == pytest.approx((2 / 3 + math.pi ** 2 / 48 + math.pi ** 2 / 16) / 2, rel=1e-6)


def test_perfect_prediction_is_zero():
    y = probs([1.0, 0.0, 1.0])
    assert raw_loss(epsilon=0.7)(y.clone(), y).item() == pytest.approx(0.0, abs=1e-7)


def test_empty_set_convention():
    zero = probs([0.0, 0.0, 0.0])
    some = probs([0.2, 0.0, 0.5])
    assert raw_loss()(zero, zero).item() == 0.0  # nothing predicted, nothing there: perfect
    assert raw_loss(epsilon=0.9)(some, zero).item() == pytest.approx(1.0)  # false positives only: complete miss
    assert raw_loss(epsilon=0.9)(zero, some).item() == pytest.approx(1.0)  # nothing predicted: complete miss


def test_empty_sets_give_finite_gradients():
    for p, y in ((probs([0.0, 0.0]), probs([0.0, 0.0])), (probs([0.3, 0.1]), probs([0.0, 0.0])),
                 (probs([0.0, 0.0]), probs([1.0, 0.0]))):
        p.requires_grad_(True)
        raw_loss()(p, y).backward()
        assert torch.isfinite(p.grad).all()


def test_agrees_with_dice_to_second_order_in_theta():
    y = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    direction = np.array([-0.3, 0.2, 0.5, 0.1, 0.0])
    for t in (0.6, 0.3):  # theta about 0.22 and 0.11 (large enough for float32, which the loss computes in)
        p = y + t * direction
        py, pp, yy = p @ y, p @ p, y @ y
        s = 2 * py / (pp + yy)
        cos = py / math.sqrt(pp * yy)
        theta = math.acos(cos)
        dice_loss = 1 - s * cos  # the Dice loss, by hand
        value = raw_loss()(probs(list(p)), probs(list(y))).item()
        # cos = 1 - theta^2/2 + theta^4/24 - ...: the two agree to second order; the gap is s theta^4 / 24
        assert abs(value - (1 - s + s * theta ** 2 / 2)) < 1e-6
        assert value - dice_loss == pytest.approx(s * theta ** 4 / 24, rel=0.05)


def test_gradient_finite_and_correct_as_theta_goes_to_zero():
    y = probs([1.0, 1.0, 0.0])
    for t in (0.0, 1e-9, 1e-5):
        p = (y + t * probs([0.0, -1.0, 1.0])).requires_grad_(True)
        raw_loss(epsilon=0.5)(p, y).backward()
        assert torch.isfinite(p.grad).all()
    # at theta = 0 the angular term has zero gradient and only 1 - s acts: d(1 - s)/dp = -2y/(pp+yy) + 4 py p/(pp+yy)^2
    p = y.clone().requires_grad_(True)
    raw_loss(epsilon=0.5)(p, y).backward()
    expected = -2 * y / 4 + 4 * 2 * y / 16  # pp = yy = py = 2
    assert torch.allclose(p.grad, expected, atol=1e-7)


def test_gradient_finite_as_theta_goes_to_half_pi():
    y = probs([1.0, 0.0, 0.0])
    for t in (0.0, 1e-9, 1e-4):
        p = probs([t, 1.0, 0.5]).requires_grad_(True)
        loss = raw_loss(epsilon=0.5)(p, y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(p.grad).all()


def test_arccos_squared_gradient():
    u = torch.tensor([0.0, 0.3, 0.9, 0.999], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(arccos_squared, (u,))
    one = torch.tensor([1.0, 1.0 + 1e-7], dtype=torch.float64, requires_grad=True)
    arccos_squared(one).sum().backward()
    assert one.grad.tolist() == pytest.approx([-2.0, -2.0])  # the limit of -2 theta / sin(theta)


def test_gradcheck_of_the_loss():
    p = torch.tensor([[0.9, 0.2, 0.4, 0.05]], dtype=torch.float64).reshape(1, 1, 4).requires_grad_(True)
    y = probs([1.0, 0.0, 1.0, 0.0])
    # the loss computes in float32, so the finite differences need a coarse step and tolerance
    assert torch.autograd.gradcheck(lambda x: raw_loss(epsilon=0.3)(x, y).double(), (p,), eps=1e-3, atol=2e-3,
                                    rtol=1e-2)


def test_softmax_logits_and_label_map():
    logits = torch.tensor([[[0.0, 2.0, -1.0, 0.5]], [[1.0, -2.0, 0.0, 0.0]]]).permute(1, 0, 2)  # (1, 2, 4)
    labels = torch.tensor([[[1, 1, 0, 1]]])
    # foreground softmax = sigmoid(l1 - l0) = sigmoid(1, -4, 1, -0.5) = (0.731059, 0.017986, 0.731059, 0.377541);
    # y = (1, 1, 0, 1): <p,y> = 1.126585, |p|^2 = 1.211754, |y|^2 = 3 -> s = 2.253171 / 4.211754 = 0.534972,
    # theta = arccos(1.126585 / sqrt(3.635261)) = 0.938652; L = (1 - s) + s * 0.5 * theta^2 = 0.700701
    assert PolyDice1Loss()(logits, labels).item() == pytest.approx(0.700701, abs=2e-6)


def test_loss_mask_removes_voxels():
    p, y = probs([1.0, 0.0, 0.7]), probs([1.0, 1.0, 0.0])
    mask = torch.tensor([1.0, 1.0, 0.0]).reshape(1, 1, 3)
    assert raw_loss()(p, y, loss_mask=mask).item() == pytest.approx(1 / 3 + math.pi ** 2 / 48, rel=1e-6)


def test_half_precision_input_gives_float32():
    logits = torch.zeros(1, 2, 2, 2, 2, dtype=torch.float16)
    labels = torch.ones(1, 1, 2, 2, 2, dtype=torch.int16)
    loss = PolyDice1Loss()(logits, labels)
    # p = 0.5 everywhere, y = 1: s = 2*4 / (2 + 8) = 0.8, cos = 1, theta = 0
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(0.2, rel=1e-6)


def test_argument_and_shape_errors():
    with pytest.raises(ValueError, match="activation must be one of .* got 'relu'"):
        PolyDice1Loss(activation="relu")
    with pytest.raises(ValueError, match="reduction must be .* got 'max'"):
        PolyDice1Loss(reduction="max")
    with pytest.raises(ValueError, match="epsilon must be a finite number, got nan"):
        PolyDice1Loss(epsilon=float("nan"))
    with pytest.raises(ValueError, match=r"target shape \(1, 1, 5\) fits neither .* net_output shape \(1, 2, 4\)"):
        PolyDice1Loss()(torch.zeros(1, 2, 4), torch.zeros(1, 1, 5))
    with pytest.raises(ValueError, match=r"one value per image: shape \(2,\) .* got shape \(3,\)"):
        PolyDice1Loss()(torch.zeros(2, 2, 4), torch.zeros(2, 1, 4), epsilon=torch.zeros(3))
    with pytest.raises(ValueError, match=r"loss_mask shape \(1, 1, 3\) does not fit net_output shape \(1, 2, 4\)"):
        PolyDice1Loss()(torch.zeros(1, 2, 4), torch.zeros(1, 1, 4), loss_mask=torch.ones(1, 1, 3))
