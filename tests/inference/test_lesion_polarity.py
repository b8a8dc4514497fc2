"""Dark lesions: which part of a box's bone the weak model prefers, and the dark voxels, on tiny arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnunet_fracture.inference.lesion_polarity import box_polarity, check_below_hu, dark_lesion_mask


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


def test_argument_and_shape_errors():
    for bad in (-1, math.nan, True, "100"):
        with pytest.raises(ValueError, match="--dark-lesions must be a HU difference >= 0"):
            check_below_hu(bad)
    assert check_below_hu(0) == 0.0 and check_below_hu(100) == 100.0
    with pytest.raises(ValueError, match=r"hu \(3,\), probability \(2,\) and bone \(3,\)"):
        box_polarity(np.zeros(3), np.zeros(2), np.ones(3, bool))
    with pytest.raises(ValueError, match=r"hu \(3,\) and bone \(2,\)"):
        dark_lesion_mask(np.zeros(3), np.ones(2, bool), 100)
