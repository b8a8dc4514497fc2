"""Dark lesions: which part of a box's bone the weak model prefers, and the dark voxels, on tiny arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnunet_fracture.inference.lesion_polarity import box_polarity, check_below_hu, check_grow_hu, dark_lesion_mask


def test_polarity_follows_the_probability_on_each_side_of_the_otsu_split():
    hu = np.array([0.0, 0.0, 300.0, 300.0, 300.0, 300.0, -800.0])
    bone = np.array([True] * 6 + [False])  # the -800 HU voxel (outside the vertebra) is not compared
    cleft = box_polarity(hu, np.array([0.9, 0.7, 0.2, 0.2, 0.1, 0.1, 1.0]), bone)
    assert cleft.dark and 0 <= cleft.split_hu < 300
    assert cleft.p_dark == pytest.approx(0.8) and cleft.p_bright == pytest.approx(0.15)
    band = box_polarity(hu, np.array([0.1, 0.1, 0.9, 0.9, 0.5, 0.5, 0.0]), bone)
    assert not band.dark and band.p_dark == pytest.approx(0.1) and band.p_bright == pytest.approx(0.7)


def test_bone_of_one_hu_or_none_has_no_split():
    for bone in (np.ones(3, bool), np.zeros(3, bool)):
        flat = box_polarity(np.full(3, 250.0), np.array([0.9, 0.1, 0.1]), bone)
        assert not flat.dark and math.isnan(flat.split_hu) and math.isnan(flat.p_dark)


def test_dark_voxels_lie_below_the_median_of_the_bone():
    hu = np.array([100.0, 200.0, 250.0, 300.0, 400.0])
    everything = np.ones(5, bool)
    assert dark_lesion_mask(hu, everything, 100).tolist() == [True, False, False, False, False]  # < 250 - 100
    assert dark_lesion_mask(hu, everything, 0).tolist() == [True, True, False, False, False]  # < 250
    without_400 = np.array([True, True, True, True, False])  # median (200 + 250) / 2 = 225: < 125
    assert dark_lesion_mask(hu, without_400, 100).tolist() == [True, False, False, False, False]
    assert not dark_lesion_mask(hu, np.zeros(5, bool), 100).any()
    assert not dark_lesion_mask(np.array([-500.0, 300.0]), np.array([False, True]), 100).any()  # not bone


def test_the_dark_core_grows_through_connected_bone_only():
    # median 300: the core is < 200 (index 2), the grown part < 225 and touching it (indices 1 and 3, not 6: it is
    # dark enough but cut off by index 5's 400 HU); index 0 is not bone
    hu = np.array([-900.0, 220.0, 150.0, 210.0, 300.0, 400.0, 220.0, 300.0, 350.0, 320.0, 300.0])
    bone = np.arange(11) > 0
    assert np.median(hu[bone]) == 300.0
    assert np.flatnonzero(dark_lesion_mask(hu, bone, 100)).tolist() == [2]
    assert np.flatnonzero(dark_lesion_mask(hu, bone, 100, 75)).tolist() == [1, 2, 3]
    assert np.flatnonzero(dark_lesion_mask(hu, bone, 100, 80)).tolist() == [2, 3]  # 220 is not < 300 - 80
    # in 3D, face neighbours only: a diagonal voxel is not grown into
    cube = np.full((3, 3, 3), 300.0)
    cube[1, 1, 1], cube[1, 1, 2], cube[2, 2, 2] = 100.0, 210.0, 210.0
    grown = dark_lesion_mask(cube, np.ones(cube.shape, bool), 100, 75)
    assert grown[1, 1, 1] and grown[1, 1, 2] and not grown[2, 2, 2] and grown.sum() == 2
    assert not dark_lesion_mask(np.full(4, 300.0), np.ones(4, bool), 100, 75).any()  # no core, nothing grows


def test_argument_and_shape_errors():
    for bad in (-1, math.nan, True, "100"):
        with pytest.raises(ValueError, match="--dark-lesions must be a HU difference >= 0"):
            check_below_hu(bad)
    assert check_below_hu(0) == 0.0 and check_below_hu(100) == 100.0
    with pytest.raises(ValueError, match=r"hu \(3,\), probability \(2,\) and bone \(3,\)"):
        box_polarity(np.zeros(3), np.zeros(2), np.ones(3, bool))
    with pytest.raises(ValueError, match=r"hu \(3,\) and bone \(2,\)"):
        dark_lesion_mask(np.zeros(3), np.ones(2, bool), 100)
    assert check_grow_hu(0, 0) == 0.0 and check_grow_hu(75, 100) == 75.0
    for bad in (-1, math.nan, True):
        with pytest.raises(ValueError, match="--dark-grow must be a HU difference >= 0"):
            check_grow_hu(bad, 100)
    with pytest.raises(ValueError, match="--dark-grow 100 must be less than --dark-lesions 100"):
        check_grow_hu(100, 100)
    with pytest.raises(ValueError, match="--dark-grow grows the dark lesions.*Fix: add --dark-lesions"):
        check_grow_hu(75, 0)
