import math

import pytest
import torch

from nnunet_fracture.losses import ConsistencyLoss


def test_mean_absolute_difference_by_hand():
    logits = torch.tensor([0.0, math.log(4.0)]).reshape(1, 1, 2)  # P = 0.5, 0.8
    error_map = torch.tensor([0.25, 1.0]).reshape(1, 1, 2)
    assert ConsistencyLoss()(logits, error_map).item() == pytest.approx((0.25 + 0.2) / 2, rel=1e-5)


def test_gradient_pulls_probabilities_towards_the_error_map_only():
    logits = torch.tensor([0.0, math.log(4.0)]).reshape(1, 1, 2).requires_grad_(True)
    error_map = torch.tensor([0.25, 1.0]).reshape(1, 1, 2).requires_grad_(True)
    ConsistencyLoss()(logits, error_map).backward()
    # sign(P - E) * P (1 - P) / 2: +0.125 where P > E, -0.08 where P < E
    assert logits.grad.flatten().tolist() == pytest.approx([0.125, -0.08], abs=1e-6)
    assert error_map.grad is None  # E is a fixed target


def test_half_precision_and_3d():
    loss = ConsistencyLoss()(torch.zeros(2, 1, 2, 2, 2, dtype=torch.float16), torch.ones(2, 1, 2, 2, 2))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(0.5)


def test_shape_errors_quote_both_shapes():
    with pytest.raises(ValueError, match=r"error_map shape \(1, 1, 3, 3\) differs from logits shape \(1, 1, 2, 2\)"):
        ConsistencyLoss()(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="one sigmoid fracture channel"):
        ConsistencyLoss()(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
