import numpy as np
import pytest

from nnunet_fracture.networks.vae_error_map import inside_outside_summary


def test_inside_outside_summary_by_hand():
    a = (np.array([[1.0, 3.0], [2.0, 2.0]]), np.array([[True, True], [False, False]]))  # inside 2, outside 2
    b = (np.array([4.0, 0.0, 1.0]), np.array([True, False, False]))  # inside 4, outside 0.5
    summary = inside_outside_summary({"a": a, "b": b})
    assert summary["cases"]["a"] == {"mean_inside": 2.0, "mean_outside": 2.0, "ratio_inside_outside": 1.0,
                                     "voxels_inside": 2}
    assert summary["cases"]["b"] == {"mean_inside": 4.0, "mean_outside": 0.5, "ratio_inside_outside": 8.0,
                                     "voxels_inside": 1}
    # pooled over voxels, not cases: inside (1 + 3 + 4) / 3, outside (2 + 2 + 0 + 1) / 4
    assert summary["pooled"] == {"mean_inside": 2.666667, "mean_outside": 1.25, "ratio_inside_outside": 2.1333}


def test_inside_outside_summary_without_inside_voxels_or_with_a_shape_mismatch():
    summary = inside_outside_summary({"n": (np.ones(3), np.zeros(3, dtype=bool))})
    assert summary["cases"]["n"]["mean_inside"] is None and summary["pooled"]["ratio_inside_outside"] is None
    with pytest.raises(ValueError, match="case m: error map shape \\(3,\\) differs from label shape \\(2,\\)"):
        inside_outside_summary({"m": (np.ones(3), np.zeros(2, dtype=bool))})
