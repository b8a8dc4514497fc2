import math

import pytest
import torch

from nnunet_fracture.losses import BoxAffinityLoss


def line(ps, hus, numbers):
    p = torch.tensor(ps)
    shape = (1, 1, 1, 1, len(ps))
    return (torch.log(p / (1 - p)).reshape(shape), torch.tensor(numbers).reshape(shape),
            torch.tensor(hus, dtype=torch.float32).reshape(shape))


def test_only_alike_pairs_in_one_box_count_by_hand():
    # pairs along x: (0.8, 0.6) alike, in box 1; (0.6, 0.3) across a 300 HU edge; (0.3, 0.4) alike but box 1 / 2
    logits, numbers, hu = line([0.8, 0.6, 0.3, 0.4], [100, 120, 420, 430], [1, 1, 1, 2])
    loss = BoxAffinityLoss(theta=50.0, tau=0.3)(logits, numbers, hu)
    assert loss.item() == pytest.approx(-math.log(0.8 * 0.6 + 0.2 * 0.4), rel=1e-5)


def test_border_pairs_count_the_outside_voxel_as_background_by_hand():
    # x: outside (0.7, 100 HU) | box 1: 0.8 (110 HU), 0.6 (120 HU) | outside (0.9, 500 HU: across an edge)
    logits, numbers, hu = line([0.7, 0.8, 0.6, 0.9], [100, 110, 120, 500], [0, 1, 1, 0])
    inside_only = BoxAffinityLoss(theta=50.0, tau=0.3)(logits, numbers, hu)
    assert inside_only.item() == pytest.approx(-math.log(0.8 * 0.6 + 0.2 * 0.4), rel=1e-5)
    # the left border pair agrees with probability 1 - 0.8 (the outside label is 0, whatever its P)
    loss = BoxAffinityLoss(theta=50.0, tau=0.3, border_pairs=True)(logits, numbers, hu)
    assert loss.item() == pytest.approx(-(math.log(0.8 * 0.6 + 0.2 * 0.4) + math.log(0.2)) / 2, rel=1e-5)


def test_border_pairs_pull_only_the_inside_voxel_down():
    logits, numbers, hu = line([0.7, 0.8, 0.6], [100, 110, 900], [0, 1, 1])
    logits.requires_grad_(True)
    BoxAffinityLoss(theta=50.0, border_pairs=True)(logits, numbers, hu).backward()
    g = logits.grad.flatten()
    assert g[1] > 0  # the inside voxel alike its outside neighbour goes down, towards background
    assert g[0] == 0 and g[2] == 0  # the outside label is known; the 900 HU voxel is across an edge


def test_border_pairs_reach_across_the_bounding_region_of_the_boxes():
    # the box is the whole middle of a 3 x 3 patch: its border pairs lie outside the boxes' bounding region
    p = torch.full((1, 1, 1, 3, 3), 0.5)
    p[..., 1, 1] = 0.9
    numbers = torch.zeros(1, 1, 1, 3, 3)
    numbers[..., 1, 1] = 1
    loss = BoxAffinityLoss(theta=50.0, border_pairs=True)(torch.log(p / (1 - p)), numbers, torch.zeros_like(p))
    assert loss.item() == pytest.approx(-math.log(0.1), rel=1e-5)  # 8 border pairs, each agreeing with 0.1


def test_similar_neighbours_are_pulled_together_and_an_edge_is_left_alone():
    logits, numbers, hu = line([0.9, 0.2, 0.5], [100, 110, 600], [1, 1, 1])
    logits.requires_grad_(True)
    BoxAffinityLoss(theta=50.0)(logits, numbers, hu).backward()
    g = logits.grad.flatten()
    assert g[0] > 0 and g[1] < 0  # the high voxel goes down, the low one up: towards agreement
    assert g[2] == 0  # across the 490 HU edge: no pull


def test_no_qualifying_pair_gives_a_connected_zero():
    logits, numbers, hu = line([0.9, 0.2], [0, 500], [1, 1])
    logits.requires_grad_(True)
    loss = BoxAffinityLoss()(logits, numbers, hu)
    loss.backward()
    assert loss.item() == 0.0


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"image_hu shape \(1, 1, 2, 2, 2\) differs from logits shape"):
        BoxAffinityLoss()(torch.zeros(1, 1, 2, 2, 3), torch.zeros(1, 1, 2, 2, 3), torch.zeros(1, 1, 2, 2, 2))


@pytest.mark.parametrize("kwargs", [{"theta": 0}, {"tau": 0}, {"tau": 1.5}, {"dilation": (0, 1, 1)},
                                    {"dilation": (1.5, 1, 1)}, {"border_pairs": 1}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        BoxAffinityLoss(**kwargs)
