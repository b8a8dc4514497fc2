import math

import pytest
import torch

from nnunet_fracture.losses.bag_aggregation import aggregate_bags, find_bags


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def row(*values, dtype=torch.float32):
    """A (1, 1, W) tensor: one sample, one channel, one spatial axis."""
    return torch.tensor(values, dtype=dtype).reshape(1, 1, -1)


def test_find_bags_pairs_sample_and_box_number():
    numbers = torch.zeros(2, 1, 2, 3, dtype=torch.int16)
    numbers[0, 0, 0, 0] = 3
    numbers[0, 0, 1, :2] = 1
    numbers[1, 0, 1, 2] = 1
    bags = find_bags(numbers)
    assert bags.count == 3
    assert bags.sample.tolist() == [0, 0, 1]
    assert bags.number.tolist() == [1, 3, 1]
    # inside voxels in flattened order: sample 0 -> (0,0)=3, (1,0)=1, (1,1)=1; sample 1 -> (1,2)=1
    assert bags.voxel_bag.tolist() == [1, 0, 0, 2]
    assert bags.inside.sum().item() == 4 and bags.outside.sum().item() == 8


def test_find_bags_float_map_and_empty_map():
    assert find_bags(row(0.0, 2.0, 2.0, 0.0)).number.tolist() == [2]
    empty = find_bags(torch.zeros(2, 1, 3, 3, dtype=torch.uint8))
    assert empty.count == 0 and empty.outside.all()


def test_find_bags_rejects_negative_numbers():
    with pytest.raises(ValueError, match=r">= 0.*found -1"):
        find_bags(row(0, -1, 1, dtype=torch.int16))


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("mean", (0.5 + 0.8) / 2),
        ("max", 0.8),
        ("smooth_max", (0.5 * math.exp(4 * 0.5) + 0.8 * math.exp(4 * 0.8)) / (math.exp(4 * 0.5) + math.exp(4 * 0.8))),
    ],
)
def test_pools_by_hand(mode, expected):
    logits = row(logit(0.9), 0.0, logit(0.8))  # the first voxel is outside and must not count
    numbers = row(0, 1, 1, dtype=torch.int64)
    value = aggregate_bags(logits, numbers, mode=mode, alpha=4.0)
    log_value = aggregate_bags(logits, numbers, mode=mode, alpha=4.0, log=True)
    assert value.dtype == torch.float32 and value.shape == (1,)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert log_value.item() == pytest.approx(math.log(expected), rel=1e-5)


def test_bags_are_pooled_separately_in_sorted_order():
    # sample 0: box 2 = {0.2}, box 1 = {0.5, 0.8}; sample 1: box 1 = {0.2, 0.8}
    logits = torch.tensor([[logit(0.2), 0.0, logit(0.8), 0.0], [logit(0.2), logit(0.8), 0.0, 0.0]]).reshape(2, 1, 4)
    numbers = torch.tensor([[2, 1, 1, 0], [1, 1, 0, 0]]).reshape(2, 1, 4)
    assert aggregate_bags(logits, numbers, "mean").tolist() == pytest.approx([0.65, 0.2, 0.5], rel=1e-5)
    assert aggregate_bags(logits, numbers, "max").tolist() == pytest.approx([0.8, 0.2, 0.8], rel=1e-5)


def test_smooth_max_lies_between_mean_and_max_and_tends_to_the_ends():
    logits = row(logit(0.1), 0.0, logit(0.8), logit(0.3))
    numbers = row(1, 1, 1, 1, dtype=torch.int16)
    mean, top = 0.425, 0.8
    previous = mean
    for alpha in (0.5, 2.0, 4.0, 10.0, 30.0):
        s = aggregate_bags(logits, numbers, "smooth_max", alpha=alpha).item()
        assert mean < s < top
        assert s > previous  # grows with alpha
        previous = s
    assert aggregate_bags(logits, numbers, "smooth_max", alpha=200.0).item() == pytest.approx(top, abs=1e-4)
    assert aggregate_bags(logits, numbers, "smooth_max", alpha=1e-4).item() == pytest.approx(mean, abs=1e-4)


@pytest.mark.parametrize("mode", ["mean", "max", "smooth_max"])
def test_log_pool_is_finite_where_probabilities_underflow(mode):
    # sigmoid(-200) underflows float32 to 0, but log sigmoid(-200) = -200 - log(1 + e^-200) = -200
    logits = torch.full((1, 1, 3), -200.0, requires_grad=True)
    numbers = torch.ones(1, 1, 3, dtype=torch.int16)
    log_value = aggregate_bags(logits, numbers, mode, log=True)
    assert log_value.item() == pytest.approx(-200.0, rel=1e-6)
    (-log_value.sum()).backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad < 0).any()


def test_max_pool_gradient_reaches_only_the_argmax_voxel():
    logits = row(0.0, logit(0.8), logit(0.2)).requires_grad_(True)
    numbers = row(1, 1, 1, dtype=torch.int16)
    aggregate_bags(logits, numbers, "max").sum().backward()
    # d sigmoid(x) / dx at P = 0.8 is 0.8 * 0.2
    assert logits.grad.flatten().tolist() == pytest.approx([0.0, 0.16, 0.0], abs=1e-6)


def test_three_dimensional_maps_and_precomputed_bags():
    logits = torch.zeros(1, 1, 2, 2, 2)
    logits[0, 0, 1, 1, 1] = logit(0.8)
    numbers = torch.zeros(1, 1, 2, 2, 2, dtype=torch.int16)
    numbers[0, 0, 1] = 4  # a 2x2 slab: P = 0.5, 0.5, 0.5, 0.8
    bags = find_bags(numbers)
    assert aggregate_bags(logits, bags, "mean").item() == pytest.approx(2.3 / 4, rel=1e-5)
    assert aggregate_bags(logits, numbers, "max").item() == pytest.approx(0.8, rel=1e-5)


def test_half_precision_logits_give_float32():
    logits = row(0.0, 1.0, -1.0).half()
    assert aggregate_bags(logits, row(1, 1, 0, dtype=torch.int16), "smooth_max").dtype == torch.float32


def test_no_bag_gives_an_empty_result():
    assert aggregate_bags(row(0.0, 1.0), row(0, 0, dtype=torch.int16)).shape == (0,)


def test_argument_errors():
    logits, numbers = row(0.0, 1.0), row(0, 1, dtype=torch.int16)
    with pytest.raises(ValueError, match=r"unknown aggregation 'median'.*'mean', 'max', 'smooth_max'"):
        aggregate_bags(logits, numbers, "median")
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0.*got 0"):
        aggregate_bags(logits, numbers, "smooth_max", alpha=0)


def test_shape_errors_quote_both_shapes_and_name_the_dataset():
    with pytest.raises(ValueError, match=r"box_numbers shape \(1, 1, 3\) differs from logits shape \(1, 1, 2\)"):
        aggregate_bags(row(0.0, 1.0), row(0, 1, 1, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"one sigmoid fracture channel.*\(1, 2, 2\).*convert --weak box\|slice"):
        aggregate_bags(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int16))
