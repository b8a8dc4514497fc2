"""Focal Tversky: hand-computed values in both parameterizations, empty sets, errors."""
import math

import pytest
import torch

from nnunet_fracture.losses import FocalTverskyLoss


def probs(*images):
    return torch.tensor(images, dtype=torch.float32).reshape(len(images), 1, -1)


P, G = probs([0.8, 0.4, 0.1]), probs([1.0, 1.0, 0.0])
# TP = 0.8 + 0.4 = 1.2, FP = 0.1, FN = 0.2 + 0.6 = 0.8


def raw(**kwargs):
    return FocalTverskyLoss(activation="none", include_background=True, smooth=0.0, **kwargs)


def test_plan_convention_alpha_weighs_false_positives():
    ti = 1.2 / (1.2 + 0.3 * 0.1 + 0.7 * 0.8)
    assert raw(alpha=0.3, beta=0.7, gamma=0.75)(P, G).item() == pytest.approx((1 - ti) ** 0.75, rel=1e-5)
    # gamma is the exponent itself
    assert raw(alpha=0.3, beta=0.7, gamma=2.0)(P, G).item() == pytest.approx((1 - ti) ** 2, rel=1e-5)


def test_paper_convention_alpha_weighs_false_negatives_and_exponent_is_one_over_gamma():
    ti = 1.2 / (1.2 + 0.7 * 0.8 + 0.3 * 0.1)
    value = raw(alpha=0.7, beta=0.3, gamma=4 / 3, convention="paper")(P, G).item()
    assert value == pytest.approx((1 - ti) ** 0.75, rel=1e-5)
    swapped = 1.2 / (1.2 + 0.3 * 0.8 + 0.7 * 0.1)
    assert raw(alpha=0.3, beta=0.7, gamma=2.0, convention="paper")(P, G).item() == pytest.approx(
        (1 - swapped) ** 0.5, rel=1e-5)


def test_the_two_default_parameterizations_are_the_same_loss():
    plan = FocalTverskyLoss()  # 0.3 / 0.7 / 0.75, plan
    paper = FocalTverskyLoss(alpha=0.7, beta=0.3, gamma=4 / 3, convention="paper")
    assert (plan.weight_fp, plan.weight_fn, plan.exponent) == pytest.approx((0.3, 0.7, 0.75))
    assert (paper.weight_fp, paper.weight_fn, paper.exponent) == pytest.approx((0.3, 0.7, 0.75))


def test_smooth_and_empty_sets():
    ti = (1.2 + 1) / (1.2 + 0.3 * 0.1 + 0.7 * 0.8 + 1)
    value = FocalTverskyLoss(activation="none", include_background=True, smooth=1.0)(P, G).item()
    assert value == pytest.approx((1 - ti) ** 0.75, rel=1e-5)
    zero = probs([0.0, 0.0])
    assert raw()(zero, zero).item() == 0.0
    assert FocalTverskyLoss(activation="none", include_background=True)(zero, zero).item() == 0.0
    assert raw()(probs([0.5, 0.0]), zero).item() == pytest.approx(1.0)  # only false positives: TI = 0


def test_finite_gradient_at_a_perfect_prediction():
    p = G.clone().requires_grad_(True)
    loss = raw()(p, G)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(p.grad).all()


def test_per_image_and_batch_pooling():
    p, g = probs([0.8, 0.4, 0.1], [0.5, 0.5, 0.5]), probs([1.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    ti0 = 1.2 / (1.2 + 0.3 * 0.1 + 0.7 * 0.8)
    ti1 = 0.5 / (0.5 + 0.3 * 1.0 + 0.7 * 0.5)
    per_image = raw(reduction="none")(p, g)
    assert per_image[:, 0].tolist() == pytest.approx([(1 - ti0) ** 0.75, (1 - ti1) ** 0.75], rel=1e-5)
    pooled = 1.7 / (1.7 + 0.3 * 1.1 + 0.7 * 1.3)
    assert raw(batch=True)(p, g).item() == pytest.approx((1 - pooled) ** 0.75, rel=1e-5)


def test_softmax_leaves_background_out():
    logits = torch.tensor([[0.0, 0.0], [math.log(4.0), -math.log(4.0)]]).reshape(1, 2, 2)  # p_fg = 0.8, 0.2
    labels = torch.tensor([[[1, 0]]])
    ti = 0.8 / (0.8 + 0.3 * 0.2 + 0.7 * 0.2)
    assert FocalTverskyLoss(smooth=0.0)(logits, labels).item() == pytest.approx((1 - ti) ** 0.75, rel=1e-5)


def test_argument_errors():
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0, got -0.1"):
        FocalTverskyLoss(alpha=-0.1)
    with pytest.raises(ValueError, match="gamma must be a finite number > 0, got 0"):
        FocalTverskyLoss(gamma=0)
    with pytest.raises(ValueError, match="convention must be one of .* got 'monai'"):
        FocalTverskyLoss(convention="monai")
    with pytest.raises(ValueError, match=r"target shape \(1, 1, 3\) fits neither .* \(1, 2, 4\)"):
        FocalTverskyLoss()(torch.zeros(1, 2, 4), torch.zeros(1, 1, 3))
