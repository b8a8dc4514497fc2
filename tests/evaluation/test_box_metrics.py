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


def _naive(p, ids, threshold):
    inside = ids > 0
    numbers = np.unique(ids[inside])
    box_max = [p[ids == n].max() for n in numbers]
    return (p[inside].sum(), p.sum(), sum(m >= threshold for m in box_max), len(numbers),
            int((p[~inside] >= threshold).sum()), int((~inside).sum()))


@pytest.mark.parametrize("scale", [1, 100_000])  # small box numbers (sliced per box) and huge ones (sorted)
def test_random_maps_match_a_naive_count(scale):
    rng = np.random.default_rng(scale)
    for _ in range(50):
        shape = tuple(rng.integers(1, 6, size=3))
        p = rng.random(shape).round(1).astype(np.float32)
        ids = rng.integers(-1, 4, size=shape).astype(np.int64) * scale
        s = BoxStats.from_arrays(p, ids, 0.5)
        got = (s.mass_inside, s.mass_total, s.boxes_hit, s.boxes_total, s.outside_positive, s.outside_total)
        assert got == pytest.approx(_naive(p.astype(np.float64), ids, 0.5))


def test_box_number_types():
    p = np.array([0.6, 0.2, 0.7])
    assert BoxStats.from_arrays(p, np.array([True, False, False])).boxes_hit == 1
    assert BoxStats.from_arrays(p, np.array([2.0, 0.0, 1.0])).boxes_total == 2
    with pytest.raises(ValueError, match="whole numbers"):
        BoxStats.from_arrays(p, np.array([1.5, 0.0, 0.0]))
