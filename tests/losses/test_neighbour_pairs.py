import numpy as np
import torch

from nnunet_fracture.losses.neighbour_pairs import boxes_region, half_neighbourhood, pair_slices


def test_half_neighbourhood_holds_one_of_each_pair():
    offsets = half_neighbourhood((1, 1, 1))
    assert len(offsets) == 13
    assert all(tuple(-o for o in off) not in offsets for off in offsets)
    assert half_neighbourhood((2, 1)) == [(0, 1), (2, -1), (2, 0), (2, 1)]


def test_pair_slices_pair_each_voxel_with_its_neighbour_by_hand():
    x = np.arange(12).reshape(3, 4)
    a, b = pair_slices((1, -1))  # (i, j) with (i + 1, j - 1)
    assert x[a].tolist() == [[1, 2, 3], [5, 6, 7]]
    assert x[b].tolist() == [[4, 5, 6], [8, 9, 10]]
    a, b = pair_slices((0, 2))
    assert x[a].tolist() == [[0, 1], [4, 5], [8, 9]]
    assert x[b].tolist() == [[2, 3], [6, 7], [10, 11]]


def test_boxes_region_is_the_bounding_region_grown_and_clipped():
    inside = torch.zeros(5, 6, dtype=torch.bool)
    inside[1, 2] = inside[2, 4] = True
    assert boxes_region(inside, (0, 0)) == (slice(None), slice(None), slice(1, 3), slice(2, 5))
    assert boxes_region(inside, (2, 1)) == (slice(None), slice(None), slice(0, 5), slice(1, 6))
