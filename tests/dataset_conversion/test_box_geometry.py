"""World <-> voxel box geometry, validation, clipping and rasterisation, against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from nnunet_fracture.dataset_conversion.box_geometry import (
    box_problem,
    check_box,
    clip_box,
    is_axis_aligned,
    rasterise_boxes,
    voxel_to_world_box,
    world_to_voxel_box,
)
from nnunet_fracture.dataset_conversion.case import VoxelBox

COS30, SIN30 = math.cos(math.radians(30)), math.sin(math.radians(30))
ROT_Z30 = (COS30, -SIN30, 0.0, SIN30, COS30, 0.0, 0.0, 0.0, 1.0)


def grid(size=(20, 20, 10), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    image = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    if direction is not None:
        image.SetDirection([float(d) for d in direction])
    return image


def flipped_anisotropic() -> sitk.Image:
    """x = 100 - 0.8 i, y = 50 - 0.8 j, z = -30 + 2.5 k (RAS-stored CT seen in LPS)."""
    return grid(spacing=(0.8, 0.8, 2.5), origin=(100, 50, -30), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))


def test_world_to_voxel_axis_aligned_anisotropic_flipped():
    # i = (100 - x) / 0.8 in [1.875, 4.375] -> 2..4; j = (50 - y) / 0.8 in [0.875, 6.25] -> 1..6;
    # k = (z + 30) / 2.5 in [1.96, 4.04] -> 2..4
    box = world_to_voxel_box(flipped_anisotropic(), (96.5, 45.0, -25.1), (98.5, 49.3, -19.9), "L1", 2)
    assert box == VoxelBox((2, 1, 2), (4, 6, 4), "L1", 2)


def test_voxel_to_world_axis_aligned_anisotropic_flipped():
    world_min, world_max = voxel_to_world_box(flipped_anisotropic(), VoxelBox((2, 1, 2), (4, 6, 4)))
    np.testing.assert_allclose(world_min, (96.8, 45.2, -25.0))
    np.testing.assert_allclose(world_max, (98.4, 49.2, -20.0))


def test_voxel_centres_on_the_box_surface_count_as_inside():
    image = flipped_anisotropic()
    # exactly the centres of voxels i=2..4, computed in floating point (0.1 is not exact in binary)
    box = world_to_voxel_box(image, (100 - 0.8 * 4, 50 - 0.8 * 6, -30 + 2.5 * 2), (100 - 0.8 * 2, 50 - 0.8 * 1, -20))
    assert box == VoxelBox((2, 1, 2), (4, 6, 4))


def test_voxel_to_world_oblique_30_degrees_about_z():
    # x = 0.8 (i cos30 - j sin30), y = 0.8 (i sin30 + j cos30), z = 2.5 k; corners (i, j) of 0..10 map to
    # (0, 0), (6.928, 4), (-4, 6.928), (2.928, 10.928)
    image = grid(spacing=(0.8, 0.8, 2.5), direction=ROT_Z30)
    world_min, world_max = voxel_to_world_box(image, VoxelBox((0, 0, 0), (10, 10, 2)))
    np.testing.assert_allclose(world_min, (-4.0, 0.0, 0.0), atol=1e-9)
    np.testing.assert_allclose(world_max, (8 * COS30, 4 + 8 * COS30, 5.0), atol=1e-9)


def test_world_to_voxel_oblique_is_index_bounding_box_of_corners():
    # world corners (-4, 0), (6.928, 0), (-4, 10.928), (6.928, 10.928) have i = (x cos30 + y sin30) / 0.8 =
    # -4.33, 7.5, 2.5, 14.33 and j = (-x sin30 + y cos30) / 0.8 = 2.5, -4.33, 14.33, 7.5 -> -4..14 (inward)
    image = grid(spacing=(0.8, 0.8, 2.5), direction=ROT_Z30)
    box = world_to_voxel_box(image, (-4.0, 0.0, 0.0), (8 * COS30, 4 + 8 * COS30, 5.0))
    assert box == VoxelBox((-4, -4, 0), (14, 14, 2))


def test_world_to_voxel_oblique_point_box_finds_its_voxel():
    image = grid(spacing=(0.8, 0.8, 2.5), origin=(3, -7, 11), direction=ROT_Z30)
    centre = np.array(image.TransformIndexToPhysicalPoint((5, 6, 3)))
    assert world_to_voxel_box(image, centre - 0.01, centre + 0.01) == VoxelBox((5, 6, 3), (5, 6, 3))


def test_world_box_between_two_slices_holds_no_voxel():
    # k = (z + 30) / 2.5 in [0.44, 0.8]: no whole k
    assert world_to_voxel_box(flipped_anisotropic(), (96, 45, -28.9), (99, 49, -28.0)) is None


@pytest.mark.parametrize("bad", [((0, 0, 5), (1, 1, 4)), ((0, 0, math.nan), (1, 1, 1))])
def test_world_box_min_larger_than_max_or_nan_raises(bad):
    with pytest.raises(ValueError):
        world_to_voxel_box(grid(), *bad)


def test_is_axis_aligned():
    assert is_axis_aligned(flipped_anisotropic())
    assert is_axis_aligned(grid(direction=(0, 0, 1, -1, 0, 0, 0, 1, 0)))
    assert not is_axis_aligned(grid(direction=ROT_Z30))


def test_box_problem_and_check_box():
    size = (20, 20, 10)
    assert box_problem(VoxelBox((0, 0, 0), (19, 19, 9)), size) is None
    assert "larger than max" in box_problem(VoxelBox((3, 0, 0), (2, 5, 5)), size)
    assert "not inside" in box_problem(VoxelBox((0, 0, 0), (5, 5, 10)), size)
    assert "not inside" in box_problem(VoxelBox((-1, 0, 0), (5, 5, 5)), size)
    with pytest.raises(ValueError, match="case 'x'.*not inside"):
        check_box(VoxelBox((0, 0, 0), (20, 5, 5)), size, "case 'x'")


def test_clip_box_with_offset_and_outside():
    box = VoxelBox((2, 3, 4), (12, 13, 14), "T12", 3)
    assert clip_box(box, (8, 8, 8), offset=(5, 5, 5)) == VoxelBox((0, 0, 0), (7, 7, 7), "T12", 3)
    assert clip_box(box, (20, 20, 20)) == box
    assert clip_box(box, (5, 5, 5), offset=(13, 0, 0)) is None


def test_rasterise_box_and_slice_modes_with_overlap():
    size = (6, 5, 4)  # i, j, k -> array shape (4, 5, 6)
    boxes = [VoxelBox((0, 0, 0), (2, 2, 1)), VoxelBox((2, 2, 1), (3, 3, 2))]
    numbers = rasterise_boxes(boxes, size, "box")
    assert numbers.shape == (4, 5, 6) and numbers.dtype == np.uint8
    assert (numbers > 0).sum() == 3 * 3 * 2 + 2 * 2 * 2 - 1  # one shared voxel (2, 2, 1), won by the later box
    assert numbers[1, 2, 2] == 2 and numbers[0, 0, 0] == 1 and (numbers == 1).sum() == 17 and (numbers == 2).sum() == 8
    numbers = rasterise_boxes(boxes, size, "slice")
    assert (numbers[0] == 1).all() and (numbers[1:3] == 2).all() and not numbers[3].any()
    with pytest.raises(ValueError):
        rasterise_boxes(boxes, size, "blob")
    with pytest.raises(ValueError):
        rasterise_boxes([VoxelBox((0, 0, 0), (6, 0, 0))], size)
    with pytest.raises(ValueError, match="at most 255"):
        rasterise_boxes([VoxelBox((0, 0, 0), (0, 0, 0))] * 256, size)


# ---------------------------------------------------------------------------------------------------------------
# properties

@st.composite
def signed_permutation_grids(draw):
    perm = draw(st.permutations([0, 1, 2]))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    direction = np.zeros((3, 3))
    for row, (col, sign) in enumerate(zip(perm, signs)):
        direction[row, col] = sign
    size = draw(st.tuples(*[st.integers(1, 60)] * 3))
    spacing = draw(st.tuples(*[st.floats(0.2, 6.0)] * 3))
    origin = draw(st.tuples(*[st.floats(-800.0, 800.0)] * 3))
    return grid(size, spacing, origin, direction.ravel())


@st.composite
def boxes_in(draw, size):
    lo, hi = [], []
    for s in size:
        a, b = sorted(draw(st.tuples(st.integers(0, s - 1), st.integers(0, s - 1))))
        lo.append(a)
        hi.append(b)
    return VoxelBox(tuple(lo), tuple(hi))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), image=signed_permutation_grids())
def test_round_trip_is_identity_on_signed_permutation_grids(data, image):
    box = data.draw(boxes_in(image.GetSize()))
    assert world_to_voxel_box(image, *voxel_to_world_box(image, box)) == box


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    quaternion=st.tuples(*[st.floats(-1.0, 1.0)] * 4).filter(lambda q: sum(v * v for v in q) > 0.05),
    spacing=st.tuples(*[st.floats(0.2, 6.0)] * 3),
    origin=st.tuples(*[st.floats(-800.0, 800.0)] * 3),
)
def test_round_trip_contains_box_on_oblique_grids(data, quaternion, spacing, origin):
    w, x, y, z = np.asarray(quaternion) / np.linalg.norm(quaternion)
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    image = grid((40, 40, 40), spacing, origin, rotation.ravel())
    box = data.draw(boxes_in(image.GetSize()))
    back = world_to_voxel_box(image, *voxel_to_world_box(image, box))
    assert all(b <= a for a, b in zip(box.lo, back.lo))
    assert all(b >= a for a, b in zip(box.hi, back.hi))
