import math

import pytest
import torch

from nnunet_fracture.losses import BoxMILLoss, BoxTightnessLoss


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def softmax_pool(ps, alpha=4.0):
    return sum(p * math.exp(alpha * p) for p in ps) / sum(math.exp(alpha * p) for p in ps)


def test_focal_unary_of_plane_bags_and_outside_voxels_by_hand():
    # a 1 x 2 x 2 patch region: box = row 0 (two voxels), outside = row 1
    p = torch.tensor([[0.9, 0.3], [0.2, 0.6]])
    logits = torch.log(p / (1 - p)).reshape(1, 1, 1, 2, 2)
    numbers = torch.tensor([[1, 1], [0, 0]]).reshape(1, 1, 1, 2, 2)
    loss = BoxTightnessLoss(margin=(0, 0, 0), alpha=4.0, beta=0.25, gamma=2.0)(logits, numbers)
    # the box touches the patch border on every axis: all three axes are cut, so no plane is valid ...
    outside = sum(0.75 * -math.log(1 - q) for q in (0.2, 0.6)) / 2  # gamma_out = 0: plain cross entropy
    assert loss.item() == pytest.approx(outside, rel=1e-5)  # ... only the outside voxels count


def test_focal_outside_term_by_hand():
    p = torch.tensor([[0.9, 0.3], [0.2, 0.6]])
    logits = torch.log(p / (1 - p)).reshape(1, 1, 1, 2, 2)
    numbers = torch.tensor([[1, 1], [0, 0]]).reshape(1, 1, 1, 2, 2)
    loss = BoxTightnessLoss(margin=(0, 0, 0), gamma_out=2.0)(logits, numbers)
    assert loss.item() == pytest.approx(sum(0.75 * q ** 2 * -math.log(1 - q) for q in (0.2, 0.6)) / 2, rel=1e-5)


def test_planes_of_a_whole_box_by_hand():
    p = torch.full((1, 1, 3, 4, 3), 0.1)
    p[0, 0, 1, 1, 1], p[0, 0, 1, 2, 1] = 0.9, 0.3  # the box is voxels (1, 1..2, 1)
    numbers = torch.zeros(p.shape, dtype=torch.long)
    numbers[0, 0, 1, 1:3, 1] = 1
    loss = BoxTightnessLoss(margin=(0, 0, 0))(torch.log(p / (1 - p)), numbers)
    # planes: z = 1 -> {0.9, 0.3}; y = 1 -> {0.9}; y = 2 -> {0.3}; x = 1 -> {0.9, 0.3}
    bags = [softmax_pool([0.9, 0.3]), 0.9, 0.3, softmax_pool([0.9, 0.3])]
    positive = sum(0.25 * (1 - s) ** 2 * -math.log(s) for s in bags) / 4
    negative = 0.75 * -math.log(0.9)  # the mean over the outside voxels, all at P = 0.1
    assert loss.item() == pytest.approx(positive + negative, rel=1e-5)


def test_a_smooth_maximum_is_satisfied_by_a_few_voxels_unlike_the_mean():
    numbers = torch.zeros(1, 1, 6, 6, 6, dtype=torch.long)
    numbers[0, 0, 1:5, 1:5, 1:5] = 1
    cross = torch.full(numbers.shape, -6.0)  # three lines through the box: they meet every plane
    cross[0, 0, 2, 2, 1:5] = 6.0
    cross[0, 0, 1:5, 2, 2] = 6.0
    cross[0, 0, 2, 1:5, 2] = 6.0
    full = torch.where(numbers > 0, 6.0, -6.0)
    loss = BoxTightnessLoss(margin=(0, 0, 0), alpha=8.0)
    assert loss(cross, numbers).item() - loss(full, numbers).item() < 0.01
    # 10 of the 64 box voxels on: the mean pool is 0.16, so a mean bag is far from satisfied
    assert BoxMILLoss(aggregation="mean")(cross, numbers).item() > 1.5


def test_gradient_flows_to_every_voxel_of_a_plane():
    numbers = torch.zeros(1, 1, 5, 5, 5, dtype=torch.long)
    numbers[0, 0, 1:4, 1:4, 1:4] = 1
    logits = torch.zeros(numbers.shape, requires_grad=True)
    BoxTightnessLoss(margin=(0, 0, 0))(logits, numbers).backward()
    inside = numbers.bool()
    assert bool((logits.grad[inside] < 0).all())  # raise P in the box
    assert bool((logits.grad[~inside] > 0).all())  # lower P outside


def test_the_rim_joins_the_outside_term_by_hand():
    # box y 1..3 at z = x = 1 of a 3 x 5 x 3 patch, margin 1 and rim 1 in y: core y = 2, rim y = 1 and y = 3
    p = torch.full((1, 1, 3, 5, 3), 0.1)
    p[0, 0, 1, 1:4, 1] = torch.tensor([0.6, 0.9, 0.7])
    numbers = torch.zeros(p.shape, dtype=torch.long)
    numbers[0, 0, 1, 1:4, 1] = 1
    logits = torch.log(p / (1 - p))
    loss = BoxTightnessLoss(margin=(0, 1, 0), rim=(0, 1, 0))(logits, numbers)
    bags = [0.9, 0.9, 0.9]  # the z = 1, y = 2 and x = 1 planes each hold only the core voxel y = 2
    positive = sum(0.25 * (1 - s) ** 2 * -math.log(s) for s in bags) / 3
    outside = [0.1] * (45 - 3) + [0.6, 0.7]
    negative = 0.75 * sum(-math.log(1 - q) for q in outside) / len(outside)
    assert loss.item() == pytest.approx(positive + negative, rel=1e-5)
    without = BoxTightnessLoss(margin=(0, 1, 0))(logits, numbers)
    assert without.item() == pytest.approx(positive + 0.75 * -math.log(0.9), rel=1e-5)


def test_a_rim_wider_than_the_margin_is_refused():
    with pytest.raises(ValueError, match="must not exceed the annotation margin"):
        BoxTightnessLoss(margin=(1, 1, 1), rim=(2, 0, 0))


@pytest.mark.parametrize("kwargs", [{"beta": 1.5}, {"gamma": -1}, {"gamma_out": -2}, {"alpha": 0}, {"margin": (1, -1, 0)},
                                    {"aggregation": "median"}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        BoxTightnessLoss(**kwargs)


def test_margin_must_match_the_axes():
    with pytest.raises(ValueError, match="spatial axes"):
        BoxTightnessLoss(margin=(1, 1))(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4))


def test_solid_bags_score_the_window_mean_by_hand():
    p = torch.full((1, 1, 3, 4, 3), 0.1)
    p[0, 0, 1, 1, 1], p[0, 0, 1, 2, 1] = 0.9, 0.3  # the box is voxels (1, 1..2, 1), as in the test above
    numbers = torch.zeros(p.shape, dtype=torch.long)
    numbers[0, 0, 1, 1:3, 1] = 1
    loss = BoxTightnessLoss(margin=(0, 0, 0), window=2)(torch.log(p / (1 - p)), numbers)
    # the 2 x 2 x 2 cube at (1, 1, 1) holds 0.9, 0.3 and six voxels of 0.1; the one at (1, 2, 1) holds 0.3 and
    # seven of 0.1
    at_first, at_second = (0.9 + 0.3 + 6 * 0.1) / 8, (0.3 + 7 * 0.1) / 8
    bags = [softmax_pool([at_first, at_second]), at_first, at_second, softmax_pool([at_first, at_second])]
    positive = sum(0.25 * (1 - s) ** 2 * -math.log(s) for s in bags) / 4
    negative = 0.75 * -math.log(0.9)  # the outside voxels stay single voxels
    assert loss.item() == pytest.approx(positive + negative, rel=1e-5)


def _lattice_and_solid():
    numbers = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    numbers[0, 0, 1:7, 1:7, 1:7] = 1
    z, y, x = torch.meshgrid(*(torch.arange(8),) * 3, indexing="ij")
    on = ((z + y + x) % 2 == 0).reshape(numbers.shape) & (numbers > 0)  # a 3D checkerboard inside the box
    lattice = torch.where(on, 6.0, -6.0)
    solid = torch.where(numbers > 0, 6.0, -6.0)
    return numbers, lattice, solid, on


def test_a_lattice_satisfies_single_voxel_bags_but_not_solid_ones():
    numbers, lattice, solid, _ = _lattice_and_solid()
    single, cubes = BoxTightnessLoss(margin=(0, 0, 0)), BoxTightnessLoss(margin=(0, 0, 0), window=2)
    # every plane holds confident voxels either way: single-voxel bags barely tell the two apart
    assert abs(single(lattice, numbers).item() - single(solid, numbers).item()) < 0.005
    # every cube of the lattice is half on, so no bag scores above 1/2: each costs at least
    # 0.25 (1 - 1/2)^2 log 2 = 0.043, while the solid box's inner cubes score about 1
    assert cubes(lattice, numbers).item() - cubes(solid, numbers).item() > 0.04


def test_solid_bags_raise_the_lattice_gaps():
    numbers, lattice, _, on = _lattice_and_solid()
    gaps = (numbers > 0) & ~on
    grads = {}
    for window in (1, 2):
        x = lattice.clone().requires_grad_(True)
        BoxTightnessLoss(margin=(0, 0, 0), window=window)(x, numbers).backward()
        grads[window] = x.grad[gaps]
    assert bool((grads[2] < 0).all())  # every gap voxel of the box is pulled up
    assert grads[2].abs().mean() > 100 * grads[1].abs().mean()  # single-voxel bags leave the gaps all but alone


@pytest.mark.parametrize("window", [0, 1.5, True])
def test_a_bad_window_is_refused(window):
    with pytest.raises(ValueError, match="window width must be an integer >= 1"):
        BoxTightnessLoss(window=window)


def test_weak_box_loss_uses_solid_bags_at_the_highest_resolution_only():
    from nnunet_fracture.losses import WeakBoxLoss

    numbers, lattice, _, _ = _lattice_and_solid()
    small_numbers = numbers[..., ::2, ::2, ::2]
    small = torch.where(small_numbers > 0, 1.0, -3.0)
    loss = WeakBoxLoss(lambda_outside=0, lambda_mil=0, lambda_contrast=0, lambda_tightness=1.0,
                       tightness_margin=(0, 0, 0), tightness_window=2, scale_weights=[1, 1])
    total = loss([lattice, small], [numbers, small_numbers])
    cubes, single = BoxTightnessLoss(margin=(0, 0, 0), window=2), BoxTightnessLoss(margin=(0, 0, 0))
    expected = 0.5 * cubes(lattice, numbers).item() + 0.5 * single(small, small_numbers).item()
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_slice_planes_by_hand():
    # a slice range z 1..2 of a 4 x 2 x 2 patch (whole slices, cut in-plane): with every axis, no plane is valid;
    # with the slice axis alone, each of the two slices is a bag of its four voxels
    p = torch.full((1, 1, 4, 2, 2), 0.1)
    p[0, 0, 1] = torch.tensor([[0.9, 0.1], [0.1, 0.1]])
    p[0, 0, 2] = torch.tensor([[0.3, 0.2], [0.1, 0.1]])
    numbers = torch.zeros(p.shape, dtype=torch.long)
    numbers[0, 0, 1:3] = 1
    logits = torch.log(p / (1 - p))
    negative = 0.75 * -math.log(0.9)  # the outside slices z = 0 and 3, all at P = 0.1
    assert BoxTightnessLoss(margin=(0, 0, 0))(logits, numbers).item() == pytest.approx(negative, rel=1e-5)
    bags = [softmax_pool([0.9, 0.1, 0.1, 0.1]), softmax_pool([0.3, 0.2, 0.1, 0.1])]
    positive = sum(0.25 * (1 - s) ** 2 * -math.log(s) for s in bags) / 2
    loss = BoxTightnessLoss(margin=(0, 0, 0), axes=(0,))(logits, numbers)
    assert loss.item() == pytest.approx(positive + negative, rel=1e-5)
