import pytest
import torch

from nnunet_fracture.training.box_priors import (barrier_sharpness, dilation_voxels, hu_from_normalised,
                                                 margin_voxels, tightness_axes)


def test_margin_and_dilation_in_voxels():
    assert margin_voxels(6.0, (3.0, 1.5, 0.75)) == (2.0, 4.0, 8.0)
    assert dilation_voxels(1.5, (3.0, 1.5, 0.5)) == (1, 1, 3)  # at least one voxel
    with pytest.raises(ValueError, match="annotation_margin_mm"):
        margin_voxels(-1.0, (1.0,))
    with pytest.raises(ValueError, match="affinity_dilation_mm"):
        dilation_voxels(0.0, (1.0,))


def test_hu_is_recovered_from_ct_normalisation():
    hu = hu_from_normalised(torch.tensor([-1.0, 0.0, 2.0]), "CTNormalization", {"mean": 300.0, "std": 100.0})
    assert hu.tolist() == [200.0, 300.0, 500.0]
    with pytest.raises(ValueError, match="ZScoreNormalization; set lambda_affinity=0"):
        hu_from_normalised(torch.zeros(1), "ZScoreNormalization", {"mean": 0.0, "std": 1.0})


def test_barrier_sharpness_grows_and_stops_at_its_cap():
    assert barrier_sharpness(0, 5.0, 1.1, 50.0) == 5.0
    assert barrier_sharpness(2, 5.0, 1.1, 50.0) == pytest.approx(6.05)
    assert barrier_sharpness(10_000, 5.0, 1.1, 50.0) == 50.0
    assert barrier_sharpness(7, 5.0, 1.0, 50.0) == 5.0


def test_slice_planes_follow_the_slice_axis_through_the_transpose():
    assert tightness_axes("box", (0, 1, 2), 3) is None
    assert tightness_axes("slice", (0, 1, 2), 3) == (0,)
    assert tightness_axes("slice", (2, 0, 1), 3) == (1,)  # the raw image's axis 0 is the patch's axis 1
    with pytest.raises(ValueError, match="3d configuration"):
        tightness_axes("slice", (0, 1, 2), 2)
    with pytest.raises(ValueError, match="tightness_planes"):
        tightness_axes("axial", (0, 1, 2), 3)
