"""Labels of a self-training round: the uncertainty band, the border ring, the unsure and the faint boxes and the
margins of dark lesions, on tiny hand-drawn masks."""
import math

import numpy as np
import pytest

from nnunet_fracture.dataset_conversion.case import VoxelBox
from nnunet_fracture.dataset_conversion.source_dataset import BoxEntry
from nnunet_fracture.inference.dataset_export import IGNORE_LABEL
from nnunet_fracture.inference.round_labels import (check_dark_margin, check_faint_hu,
                                                    dark_boxes, faint_boxes, ignored_labels, mask_contrast_hu,
                                                    unsure_boxes)


def entry(lo, hi, box_id=1):
    """A box from ITK-order (i, j, k) corners, inclusive."""
    return BoxEntry(box_id, VoxelBox(tuple(lo), tuple(hi)), "L1")


def test_a_box_region_is_its_numpy_index():
    assert entry((1, 2, 3), (4, 5, 6)).region == (slice(3, 7), slice(2, 6), slice(1, 5))


def test_a_one_voxel_ring_leaves_the_core_of_a_cube():
    mask = np.zeros((7, 7, 7), np.uint8)
    mask[1:6, 1:6, 1:6] = 1  # a 5^3 cube: its face-connected erosion is the 3^3 cube inside
    labels = ignored_labels(mask, np.zeros(mask.shape, np.float32), [entry((0, 0, 0), (6, 6, 6))], ring=1)
    core = np.zeros(mask.shape, bool)
    core[2:5, 2:5, 2:5] = True
    assert np.array_equal(labels == 1, core)
    assert np.count_nonzero(labels == IGNORE_LABEL) == 125 - 27
    assert np.array_equal(labels == 0, mask == 0)


def test_a_mask_the_ring_would_empty_is_kept():
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[2:4, :, :] = 1  # two voxels thick: one erosion step leaves nothing
    labels = ignored_labels(mask, np.zeros(mask.shape, np.float32), [entry((0, 0, 0), (5, 5, 5))], ring=1)
    assert np.array_equal(labels, mask)


def test_the_ring_is_drawn_box_by_box():
    mask = np.zeros((5, 5, 12), np.uint8)
    mask[1:4, 1:4, 1:4] = 1  # box A: a 3^3 cube -> core one voxel
    mask[2, 2, 7:10] = 1  # box B: a line -> kept whole
    boxes = [entry((0, 0, 0), (4, 4, 4), 1), entry((6, 0, 0), (11, 4, 4), 2)]
    labels = ignored_labels(mask, np.zeros(mask.shape, np.float32), boxes, ring=1)
    assert labels[2, 2, 2] == 1 and np.count_nonzero(labels[:, :, :5] == IGNORE_LABEL) == 26
    assert np.array_equal(labels[:, :, 6:], mask[:, :, 6:])


def test_the_margin_of_a_dark_lesion_is_ignored_inside_its_box_only():
    mask = np.zeros((1, 1, 12), np.uint8)
    mask[0, 0, 2] = mask[0, 0, 9] = 1  # box 1 (i 0-5) is dark, box 2 (i 6-11) is not
    boxes = [entry((0, 0, 0), (5, 0, 0), 1), entry((6, 0, 0), (11, 0, 0), 2)]
    labels = ignored_labels(mask, np.zeros(mask.shape, np.float32), boxes, dark={1}, dark_margin=2)
    # two steps around i = 2: i 0, 1, 3, 4; box 2's mask keeps no margin
    assert labels.ravel().tolist() == [2, 2, 1, 2, 2, 0, 0, 0, 0, 1, 0, 0]
    margin_at_edge = ignored_labels(mask, np.zeros(mask.shape, np.float32), [entry((0, 0, 0), (3, 0, 0), 1)],
                                    dark={1}, dark_margin=2)
    assert margin_at_edge.ravel().tolist() == [2, 2, 1, 2] + [0] * 5 + [1, 0, 0]  # the margin stops at the box
    assert np.array_equal(ignored_labels(mask, np.zeros(mask.shape, np.float32), boxes, dark={1}), mask)


def test_dark_boxes_are_those_whose_polarity_is_dark():
    rows = [{"case": "a", "box_id": 1, "polarity": "dark"}, {"case": "a", "box_id": 2, "polarity": "bright"},
            {"case": "b", "box_id": 3, "polarity": ""}, {"case": "b", "box_id": 4, "polarity": "dark"}]
    assert dark_boxes(rows) == {"a": {1}, "b": {4}}


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_a_bad_dark_margin_is_refused(bad):
    with pytest.raises(ValueError, match="--ignore-dark-margin must be a whole number of voxels >= 0"):
        check_dark_margin(bad)


def test_the_band_marks_uncertain_box_voxels_outside_the_mask():
    mask = np.zeros((1, 1, 6), np.uint8)
    mask[0, 0, 0] = 1
    p = np.array([[[0.9, 0.3, 0.5, 0.19, 0.2, 0.4]]], np.float32)
    labels = ignored_labels(mask, p, [entry((0, 0, 0), (4, 0, 0))], band=(0.2, 0.5))
    # i 1 (0.3) and 4 (0.2) lie in [0.2, 0.5); 0.5 and 0.19 do not; i 5 (0.4) is outside the box
    assert labels.ravel().tolist() == [1, IGNORE_LABEL, 0, 0, IGNORE_LABEL, 0]


def test_ring_and_band_together():
    mask = np.zeros((5, 5, 7), np.uint8)
    mask[1:4, 1:4, 1:4] = 1
    p = np.full(mask.shape, 0.3, np.float32)
    labels = ignored_labels(mask, p, [entry((0, 0, 0), (4, 4, 4))], band=(0.2, 0.5), ring=1)
    assert labels[2, 2, 2] == 1
    assert np.count_nonzero(labels == IGNORE_LABEL) == 125 - 1  # the box: ring 26 + band 98
    assert not labels[:, :, 5:].any()  # outside the box stays background


@pytest.mark.parametrize("ring", [-1, 1.5, True])
def test_a_bad_ring_is_refused(ring):
    with pytest.raises(ValueError, match="ring must be an integer >= 0"):
        ignored_labels(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), [], ring=ring)


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"mask shape \(2, 2, 2\) differs from probability shape \(2, 2, 3\)"):
        ignored_labels(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)), [])


def row(case, box_id, confidence):
    return {"case": case, "box_id": box_id, "mask_confidence": confidence}


def test_the_least_confident_share_of_all_boxes_is_unsure():
    rows = [row("a", 1, 0.9), row("a", 2, 0.6), row("b", 1, math.nan), row("b", 2, 0.7), row("c", 3, 0.8)]
    # floor(0.4 x 5) = 2: b/1 (empty: 0) and a/2 (0.6); floor(0.6 x 5) = 3 adds b/2 (0.7)
    assert unsure_boxes(rows, 0.4) == {"a": {2}, "b": {1}}
    assert unsure_boxes(rows, 0.6) == {"a": {2}, "b": {1, 2}}
    assert unsure_boxes(rows, 0.19) == {}  # floor(0.95) = 0
    assert unsure_boxes(rows, 0.0) == {}


def test_unsure_ties_keep_the_rows_order():
    rows = [row("a", 1, 0.5), row("a", 2, 0.5), row("b", 1, 0.5)]
    assert unsure_boxes(rows, 0.5) == {"a": {1}}  # floor(1.5) = 1: the first of three equal boxes


@pytest.mark.parametrize("share", [-0.1, 1.0, float("nan"), True, "0.4"])
def test_a_bad_unsure_share_is_refused(share):
    with pytest.raises(ValueError, match=r"--ignore-unsure-boxes must be a share of the boxes in \[0, 1\)"):
        unsure_boxes([], share)


def test_an_unsure_box_is_ignored_whole_outside_the_confident_boxes():
    mask = np.zeros((1, 1, 8), np.uint8)
    mask[0, 0, [1, 3, 6]] = 1
    boxes = [entry((0, 0, 0), (4, 0, 0), 1), entry((3, 0, 0), (6, 0, 0), 2)]  # overlap at i 3-4
    labels = ignored_labels(mask, np.zeros(mask.shape, np.float32), boxes, unsure={1})
    # box 1 (i 0-4) is ignore except where box 2 (i 3-6) covers it; box 2 keeps its labels; i 7 is outside
    assert labels.ravel().tolist() == [IGNORE_LABEL, IGNORE_LABEL, IGNORE_LABEL, 1, 0, 0, 1, 0]
    assert np.array_equal(ignored_labels(mask, np.zeros(mask.shape, np.float32), boxes, unsure={7}), mask)


def test_mask_contrast_is_the_median_hu_of_the_mask_minus_that_of_the_allowed_rest():
    hu = np.array([100.0, 900.0, 900.0, 600.0, 600.0, 500.0])
    mask = np.array([0, 0, 0, 1, 1, 1], bool)  # median 600
    assert mask_contrast_hu(hu, mask, np.ones(6, bool)) == 600 - 900  # rest 100, 900, 900
    assert mask_contrast_hu(hu, mask, np.array([1, 0, 0, 1, 1, 1], bool)) == 600 - 100  # the 900s not allowed
    assert math.isnan(mask_contrast_hu(hu, np.zeros(6, bool), np.ones(6, bool)))  # empty mask
    assert math.isnan(mask_contrast_hu(hu, mask, mask))  # nothing around it
    with pytest.raises(ValueError, match=r"hu \(6,\), mask \(5,\)"):
        mask_contrast_hu(hu, mask[:5], np.ones(6, bool))


def test_faint_boxes_differ_by_less_than_the_threshold_either_way():
    contrasts = [150.0, -150.0, 99.9, -50.0, math.nan, 100.0]
    rows = [{"case": "a" if n < 3 else "b", "box_id": n + 1, "mask_contrast_hu": c} for n, c in enumerate(contrasts)]
    assert faint_boxes(rows, 100) == {"a": {3}, "b": {4, 5}}
    assert faint_boxes(rows, 0) == {}


@pytest.mark.parametrize("bad", [-1.0, math.nan, True, "100"])
def test_a_bad_faint_threshold_is_refused(bad):
    with pytest.raises(ValueError, match="--ignore-faint-boxes must be a HU difference >= 0"):
        check_faint_hu(bad)
