import math

import pytest
import torch

from nnunet_fracture.losses import BoxMILLoss


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def row(*values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype).reshape(1, 1, -1)


SMOOTH_4 = (0.5 * math.exp(2.0) + 0.8 * math.exp(3.2)) / (math.exp(2.0) + math.exp(3.2))


@pytest.mark.parametrize(
    "aggregation, expected",
    [("mean", -math.log(0.65)), ("max", -math.log(0.8)), ("smooth_max", -math.log(SMOOTH_4))],
)
def test_bce_of_the_pooled_bag_against_one(aggregation, expected):
    logits = row(logit(0.9), 0.0, logit(0.8))
    numbers = row(0, 1, 1, dtype=torch.int16)
    loss = BoxMILLoss(aggregation=aggregation, alpha=4.0)(logits, numbers)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_terms_are_averaged_over_bags_not_voxels():
    # box 1: one voxel with P = 0.5; box 2: three voxels with P = 0.8
    logits = row(0.0, logit(0.8), logit(0.8), logit(0.8), -5.0)
    numbers = row(1, 2, 2, 2, 0, dtype=torch.int16)
    expected = (math.log(2) - math.log(0.8)) / 2
    assert BoxMILLoss("mean")(logits, numbers).item() == pytest.approx(expected, rel=1e-5)


def test_same_box_number_in_two_samples_makes_two_bags():
    logits = torch.tensor([[0.0, 0.0], [logit(0.8), logit(0.8)]]).reshape(2, 1, 2)
    numbers = torch.ones(2, 1, 2, dtype=torch.int16)
    # two bags, -log 0.5 and -log 0.8; one merged bag would give -log 0.65
    expected = (math.log(2) - math.log(0.8)) / 2
    assert BoxMILLoss("mean")(logits, numbers).item() == pytest.approx(expected, rel=1e-5)


def test_patch_holding_only_part_of_a_box():
    full_numbers = row(0, 0, 0, 1, 1, 1, dtype=torch.int16)  # the box spans columns 3..5 of the image
    full_logits = row(-3.0, -3.0, -3.0, logit(0.8), 0.0, 0.0)
    patch = slice(1, 5)  # the patch sees columns 1..4: box voxels with P = 0.8 and 0.5
    loss = BoxMILLoss("mean")(full_logits[..., patch], full_numbers[..., patch])
    assert loss.item() == pytest.approx(-math.log(0.65), rel=1e-5)


def test_max_gradient_reaches_only_the_argmax_voxel_and_pushes_it_up():
    logits = row(0.0, logit(0.8), logit(0.2), 1.0).requires_grad_(True)
    numbers = row(1, 1, 1, 0, dtype=torch.int16)
    BoxMILLoss("max")(logits, numbers).backward()
    # d(-log sigmoid(x))/dx = -(1 - sigmoid(x)) = -0.2 at the arg max
    assert logits.grad.flatten().tolist() == pytest.approx([0.0, -0.2, 0.0, 0.0], abs=1e-6)


def test_mean_pushes_every_inside_voxel_up():
    logits = row(0.0, logit(0.8), logit(0.2), 1.0).requires_grad_(True)
    numbers = row(1, 1, 1, 0, dtype=torch.int16)
    BoxMILLoss("mean")(logits, numbers).backward()
    # d(-log mean P)/dx_i = -P_i (1 - P_i) / (n mean P), mean P = 0.5
    assert logits.grad.flatten().tolist() == pytest.approx([-0.25 / 1.5, -0.16 / 1.5, -0.16 / 1.5, 0.0], abs=1e-6)


def test_smooth_max_gradient_by_hand():
    # S = sum p w / sum w with w = exp(alpha p); dS/dp_i = w_i (1 + alpha (p_i - S)) / sum w, so raising a voxel
    # far below S lowers S: the alpha-softmax pushes low voxels of the bag down
    alpha, probabilities = 4.0, (0.5, 0.8, 0.2)
    weights = [math.exp(alpha * p) for p in probabilities]
    s = sum(p * w for p, w in zip(probabilities, weights)) / sum(weights)
    expected = [-(w * (1 + alpha * (p - s)) / sum(weights)) * p * (1 - p) / s for p, w in zip(probabilities, weights)]
    logits = row(*(logit(p) for p in probabilities), 1.0).requires_grad_(True)
    BoxMILLoss("smooth_max", alpha=alpha)(logits, row(1, 1, 1, 0, dtype=torch.int16)).backward()
    assert logits.grad.flatten().tolist() == pytest.approx(expected + [0.0], abs=1e-6)
    assert expected[0] < 0 and expected[1] < 0 and expected[2] > 0


def test_no_bag_gives_a_graph_connected_zero():
    logits = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = BoxMILLoss()(logits, torch.zeros(2, 1, 3, 3, dtype=torch.int16))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_float_box_numbers_and_half_precision_logits():
    logits = row(0.0, logit(0.8)).half()
    loss = BoxMILLoss("mean")(logits, row(1.0, 1.0))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(-math.log(0.65), rel=1e-3)


def test_argument_errors():
    with pytest.raises(ValueError, match=r"unknown aggregation 'top'.*'mean', 'max', 'smooth_max'"):
        BoxMILLoss("top")
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0.*-1"):
        BoxMILLoss("smooth_max", alpha=-1)
    with pytest.raises(ValueError, match=r"box_numbers shape \(1, 1, 2\) differs from logits shape \(1, 1, 3\)"):
        BoxMILLoss()(torch.zeros(1, 1, 3), torch.ones(1, 1, 2))
