import pytest
import torch

from nnunet_fracture.losses import find_bags
from nnunet_fracture.losses.plane_bags import box_extents, check_axes, check_margin, find_plane_bags, rim_voxels


def numbers_with(box: tuple[slice, ...], shape=(8, 8, 8), value=1) -> torch.Tensor:
    numbers = torch.zeros((1, 1) + shape, dtype=torch.int16)
    numbers[(0, 0) + box] = value
    return numbers


def planes_per_axis(planes) -> list[int]:
    return torch.bincount(planes.axis, minlength=3).tolist()


def test_core_planes_of_a_whole_box():
    # box z 2..5, y 2..6, x 3..4; margin 1 voxel in z and y, 0 in x
    planes = find_plane_bags(find_bags(numbers_with((slice(2, 6), slice(2, 7), slice(3, 5)))), (1, 1, 0))
    assert planes_per_axis(planes) == [2, 3, 2]  # z core 3..4, y core 3..5, x 3..4
    sizes = torch.bincount(planes.segment).tolist()
    assert sizes == [3 * 2] * 2 + [2 * 2] * 3 + [2 * 3] * 2  # a plane holds the core's cross-section
    assert planes.box.tolist() == [0] * 7


def test_a_box_cut_by_the_patch_keeps_only_the_planes_along_the_cut_axis():
    # the box runs into the upper z border: z planes stay (shrunk on both sides), y and x planes go
    bags = find_bags(numbers_with((slice(4, 8), slice(2, 6), slice(2, 6))))
    ext = box_extents(bags)
    assert ext.cut_hi.tolist() == [[True, False, False]] and not bool(ext.whole.any())
    planes = find_plane_bags(bags, (1, 1, 1))
    assert planes_per_axis(planes) == [2, 0, 0]  # z 5..6


def test_margins_are_rounded_up_to_whole_voxels():
    bags = find_bags(numbers_with((slice(1, 7), slice(1, 7), slice(1, 7))))
    assert planes_per_axis(find_plane_bags(bags, (0.25, 1.5, 0.0))) == [4, 2, 6]


def test_a_box_thinner_than_twice_the_margin_has_no_planes_on_that_axis():
    planes = find_plane_bags(find_bags(numbers_with((slice(2, 4), slice(2, 7), slice(2, 7)))), (1, 1, 1))
    assert planes_per_axis(planes) == [0, 3, 3]
    assert torch.bincount(planes.segment).tolist() == [2 * 3] * 6  # z not shrunk: both z rows, 3 core voxels


def test_two_samples_and_two_boxes_give_separate_bags():
    numbers = torch.zeros((2, 1, 8, 8, 8), dtype=torch.int16)
    numbers[0, 0, 1:4, 1:4, 1:4] = 1
    numbers[0, 0, 5:7, 5:7, 5:7] = 2
    numbers[1, 0, 2:5, 2:5, 2:5] = 1
    planes = find_plane_bags(find_bags(numbers), (0, 0, 0))
    assert torch.bincount(planes.box).tolist() == [9, 6, 9]


def test_no_box_no_planes():
    assert find_plane_bags(find_bags(torch.zeros(1, 1, 4, 4, 4)), (1, 1, 1)).count == 0


@pytest.mark.parametrize("margin", [(1, 1), (-1, 0, 0), "abc", (float("nan"), 0, 0), (True, 0, 0)])
def test_bad_margins_are_refused(margin):
    with pytest.raises(ValueError, match="margin"):
        check_margin(margin, 3)


def test_rim_voxels_of_a_whole_box_by_hand():
    # box z 2..5, y 2..6, x 3..4 (4 x 5 x 2); a 1-voxel rim in z and y, none in x (1.7 rounds down to 1)
    bags = find_bags(numbers_with((slice(2, 6), slice(2, 7), slice(3, 5))))
    rim = rim_voxels(bags, (1.7, 1, 0))
    assert int(rim.sum()) == 4 * 5 * 2 - 2 * 3 * 2  # all but the z 3..4, y 3..5 middle
    assert int(rim_voxels(bags, (0.9, 0.9, 0.9)).sum()) == 0  # less than a whole voxel: no rim


def test_a_cut_side_has_no_rim():
    # the box runs into the upper z border: its rim is the lower z face only
    bags = find_bags(numbers_with((slice(5, 8), slice(2, 6), slice(2, 6))))
    rim = rim_voxels(bags, (1, 0, 0))
    assert int(rim.sum()) == 4 * 4


def test_a_slice_range_gets_one_bag_per_core_slice_of_the_whole_patch():
    # a slice range: z 1..6, every voxel in-plane (so the patch cuts it on y and x); margin 1 voxel on every axis
    bags = find_bags(numbers_with((slice(1, 7), slice(None), slice(None))))
    assert planes_per_axis(find_plane_bags(bags, (1, 1, 1))) == [0, 0, 0]  # as a box: every plane is cut
    planes = find_plane_bags(bags, (1, 1, 1), axes=(0,))
    assert planes_per_axis(planes) == [4, 0, 0]  # z core 2..5, in-plane neither shrunk nor cut
    assert torch.bincount(planes.segment).tolist() == [8 * 8] * 4  # each bag a whole slice of the patch


def test_listed_axes_keep_their_own_cuts_and_margins():
    # a box cut at the upper z border: with z listed, its cut drops the y planes, as with every axis; with y alone,
    # z is free and its cut is not held against them
    bags = find_bags(numbers_with((slice(4, 8), slice(2, 6), slice(2, 6))))
    assert planes_per_axis(find_plane_bags(bags, (1, 1, 1), axes=(0, 1))) == [2, 0, 0]
    assert planes_per_axis(find_plane_bags(bags, (1, 1, 1), axes=(1,))) == [0, 2, 0]  # y core 3..4
    # a whole box, y planes only: y shrunk by its margin, z and x not shrunk (x's margin ignored)
    planes = find_plane_bags(find_bags(numbers_with((slice(2, 6), slice(1, 7), slice(2, 6)))), (1, 2, 1), axes=(1,))
    assert planes_per_axis(planes) == [0, 2, 0]  # y core 3..4
    assert torch.bincount(planes.segment).tolist() == [4 * 4] * 2


@pytest.mark.parametrize("axes", [(), (3,), (0, 0), (-1,), "z", (True,)])
def test_bad_axes_are_refused(axes):
    with pytest.raises(ValueError, match="axes"):
        check_axes(axes, 3)
