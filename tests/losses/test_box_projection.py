import math

import pytest
import torch

from nnunet_fracture.losses import BoxProjectionLoss, WeakBoxLoss


def logits_of(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p / (1 - p))


def box_of_two_voxels() -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.full((1, 1, 3, 4, 3), 0.1)
    p[0, 0, 1, 1, 1], p[0, 0, 1, 2, 1] = 0.9, 0.3  # the box is voxels (1, 1..2, 1)
    numbers = torch.zeros(p.shape, dtype=torch.long)
    numbers[0, 0, 1, 1:3, 1] = 1
    return logits_of(p), numbers


def test_profiles_of_a_whole_box_by_hand():
    logits, numbers = box_of_two_voxels()
    # profiles: z -> [max(0.9, 0.3)] = [0.9]; y -> [0.9, 0.3]; x -> [0.9]
    dice = [2 * 0.9 / (0.81 + 1), 2 * 1.2 / (0.81 + 0.09 + 2), 2 * 0.9 / (0.81 + 1)]
    expected = sum(1 - d for d in dice) / 3
    assert BoxProjectionLoss(margin=(0, 0, 0))(logits, numbers).item() == pytest.approx(expected, rel=1e-5)


def test_a_full_profile_costs_nothing_and_a_gap_costs_its_share():
    numbers = torch.zeros(1, 1, 6, 6, 6, dtype=torch.long)
    numbers[0, 0, 1:5, 1:5, 1:5] = 1
    line = torch.full(numbers.shape, -12.0)
    line[0, 0, 1:5, 2, 2] = 12.0  # a line along z through the box: every z plane holds it, one y and one x plane
    loss = BoxProjectionLoss(margin=(0, 0, 0))
    full = torch.where(numbers > 0, 12.0, -12.0)
    assert loss(full, numbers).item() == pytest.approx(0.0, abs=1e-4)
    # z profile all ones (Dice 1); the y and x profiles are [0, 1, 0, 0]: Dice 2 / (1 + 4) each
    assert loss(line, numbers).item() == pytest.approx((0 + 2 * (1 - 2 / 5)) / 3, abs=1e-4)


def test_slice_profiles_only_along_the_slice_axis():
    p = torch.full((1, 1, 4, 2, 2), 0.1)
    p[0, 0, 1, 0, 0], p[0, 0, 2, 0, 0] = 0.9, 0.3
    numbers = torch.zeros(p.shape, dtype=torch.long)
    numbers[0, 0, 1:3] = 1  # a slice range: whole slices, cut in-plane by the patch
    assert BoxProjectionLoss(margin=(0, 0, 0))(logits_of(p), numbers).item() == 0.0  # every profile cut away
    loss = BoxProjectionLoss(margin=(0, 0, 0), axes=(0,))(logits_of(p), numbers)
    assert loss.item() == pytest.approx(1 - 2 * 1.2 / (0.81 + 0.09 + 2), rel=1e-5)


def test_no_box_gives_a_zero_that_keeps_the_graph():
    logits = torch.zeros(1, 1, 4, 4, 4, requires_grad=True)
    loss = BoxProjectionLoss()(logits, torch.zeros(1, 1, 4, 4, 4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_the_gradient_raises_the_best_voxel_of_each_plane():
    logits, numbers = box_of_two_voxels()
    logits.requires_grad_(True)
    BoxProjectionLoss(margin=(0, 0, 0))(logits, numbers).backward()
    grad = logits.grad[0, 0]
    assert grad[1, 1, 1] < 0 and grad[1, 2, 1] < 0  # both are the maximum of some plane (y = 1, y = 2)
    assert torch.count_nonzero(grad).item() == 2


def test_weak_box_loss_adds_it_with_its_weight():
    logits, numbers = box_of_two_voxels()
    alone = BoxProjectionLoss(margin=(0, 0, 0))(logits, numbers)
    weak = WeakBoxLoss(lambda_outside=0, lambda_mil=0, lambda_contrast=0, lambda_projection=2.0,
                       tightness_margin=(0, 0, 0))
    assert weak(logits, numbers).item() == pytest.approx(2 * alone.item(), rel=1e-6)
    assert weak.last_components["projection"] == pytest.approx(alone.item(), rel=1e-6)


@pytest.mark.parametrize("kwargs", [dict(margin=(-1, 0, 0)), dict(window=0), dict(axes=(3,)), dict(axes=())])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        BoxProjectionLoss(**kwargs)


def test_margin_must_match_the_axes():
    logits, numbers = box_of_two_voxels()
    with pytest.raises(ValueError, match=r"margin has 2 entries but logits \(1, 1, 3, 4, 3\) has 3"):
        BoxProjectionLoss()(logits, numbers, margin=(1, 1))
    assert math.isfinite(BoxProjectionLoss(window=2)(logits, numbers).item())
