import math

import numpy as np
import pytest

from nnunet_fracture.evaluation.box_metrics import BoxStats


def test_hand_computed_counts_and_rates():
    # 1 x 2 x 4 volume: box 1 on the first two voxels of row 0, box 2 on the last voxel of row 1
    p = np.array([[[0.9, 0.1, 0.2, 0.0], [0.6, 0.0, 0.3, 0.4]]])
    ids = np.array([[[1, 1, 0, 0], [0, 0, 0, 2]]], dtype=np.uint8)
    s = BoxStats.from_arrays(p, ids, threshold=0.5)
    assert s.mass_inside == pytest.approx(0.9 + 0.1 + 0.4) and s.mass_total == pytest.approx(2.5)
    assert (s.boxes_hit, s.boxes_total) == (1, 2)  # box 2's max is 0.4 < 0.5
    assert (s.outside_positive, s.outside_total) == (1, 5)  # only the 0.6 outside
    assert s.mass_inside_fraction == pytest.approx(1.4 / 2.5) and s.hit_rate == 0.5 and s.outside_fp_rate == 0.2


def test_sum_pools_counts_and_empty_conventions():
    a = BoxStats.from_arrays(np.array([0.7, 0.0]), np.array([1, 0]))
    b = BoxStats.from_arrays(np.zeros(3), np.zeros(3, dtype=int))
    assert math.isnan(b.mass_inside_fraction) and math.isnan(b.hit_rate) and b.outside_fp_rate == 0
    pooled = a + b
    assert pooled.boxes_total == 1 and pooled.outside_total == 4 and pooled.mass_inside_fraction == 1.0
    everything_inside = BoxStats.from_arrays(np.array([0.2]), np.array([3]))
    assert math.isnan(everything_inside.outside_fp_rate) and everything_inside.hit_rate == 0.0
    assert set(pooled.as_dict()) >= {"mass_inside_fraction", "box_hit_rate", "outside_fp_rate"}


def test_errors_quote_shapes_and_threshold():
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        BoxStats.from_arrays(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="threshold"):
        BoxStats.from_arrays(np.zeros(2), np.zeros(2), threshold=0)
