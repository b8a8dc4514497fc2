"""The quality bench's per-arm numbers on hand-made 1 x 4 x 4 cases, every value computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from nnunet_fracture.evaluation.bench_scores import KEYS, BenchScore, KindBox, boxes_mask


def _case(points, shape=(1, 4, 4)):
    out = np.zeros(shape, dtype=bool)
    for p in points:
        out[p] = True
    return out


def test_two_fractured_cases_and_one_normal_by_hand():
    score = BenchScore()
    # case A: wedge box rows 0-1, columns 0-1; truth 3 voxels, mask hits 2 of them + 1 inside the box + 1 far away
    gt_a = _case([(0, 0, 0), (0, 0, 1), (0, 1, 0)])
    mask_a = _case([(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 3, 3)])
    p_a = np.where(mask_a, 0.9, 0.1).astype(np.float32)
    score.add(gt_a, mask_a, p_a, [KindBox((0, 0, 0), (0, 1, 1), "wedge")])
    # case B: cleft box row 3; truth 2 voxels, mask finds 1
    gt_b = _case([(0, 3, 0), (0, 3, 1)])
    mask_b = _case([(0, 3, 0)])
    p_b = np.where(mask_b, 0.8, 0.2).astype(np.float32)
    score.add(gt_b, mask_b, p_b, [KindBox((0, 3, 0), (0, 3, 3), "cleft")])
    # case C: fracture-free, 2 false-positive voxels, max P 0.7
    mask_c = _case([(0, 2, 2), (0, 2, 3)])
    p_c = np.where(mask_c, 0.7, 0.0).astype(np.float32)
    score.add(np.zeros((1, 4, 4), bool), mask_c, p_c, [])
    r = score.as_dict()
    assert set(KEYS) <= set(r)
    # whole volume: TP 2 + 1 = 3, FP 2 + 0 + 2 = 4, FN 1 + 1 = 2 -> Dice 6 / 12, precision 3 / 7, recall 3 / 5
    assert r["whole_volume_dice"] == pytest.approx(0.5)
    assert r["whole_volume_precision"] == pytest.approx(3 / 7)
    assert r["whole_volume_recall"] == pytest.approx(0.6)
    # inside boxes: A TP 2 FP 1 FN 1, B TP 1 FN 1 -> Dice 6 / (6 + 1 + 2) = 2 / 3
    assert r["in_box_dice"] == pytest.approx(2 / 3)
    # ... precision TP 3 / called 4, recall TP 3 / true 5
    assert r["in_box_precision"] == pytest.approx(3 / 4) and r["in_box_recall"] == pytest.approx(3 / 5)
    # cases: scores 0.9, 0.8 (fractured) vs 0.7 (normal) -> ROC AUC 1
    assert r["detection_auc"] == pytest.approx(1.0)
    assert r["fp_voxels_per_normal_case"] == 2.0 and r["normal_cases"] == 1 and r["cases"] == 3
    assert r["recall_by_kind"] == {"cleft": pytest.approx(0.5), "wedge": pytest.approx(2 / 3)}
    # best F1 over thresholds: at 0.8 the called voxels are A's 4 and B's 1 -> TP 3, FP 2, FN 2 -> F1 6 / 10;
    # at 0.7 C's two join -> 6 / 12; at 0.9 -> TP 2, FP 2, FN 3 -> 4 / 9. Best 0.6 at 0.8
    assert r["best_f1"] == pytest.approx(0.6)


def test_pseudo_mask_scored_inside_boxes_and_shape_errors():
    score = BenchScore()
    gt = _case([(0, 0, 0), (0, 0, 1)])
    everywhere = np.ones((1, 4, 4), dtype=bool)
    pseudo = _case([(0, 0, 0), (0, 0, 1), (0, 3, 3)])  # the corner voxel lies outside the box: not counted
    score.add(gt, everywhere, everywhere.astype(np.float32), [KindBox((0, 0, 0), (0, 0, 3), "wedge")],
              in_box_mask=pseudo)
    r = score.as_dict()
    assert r["in_box_dice"] == pytest.approx(1.0) and r["whole_volume_dice"] == pytest.approx(4 / 18)
    assert r["detection_auc"] is None and r["fp_voxels_per_normal_case"] is None
    with pytest.raises(ValueError, match=r"mask has shape \(1, 4\), the ground truth \(1, 4, 4\)"):
        score.add(gt, np.zeros((1, 4)), everywhere, [])


def test_boxes_mask_inclusive_bounds():
    inside = boxes_mask((2, 3, 3), [KindBox((0, 1, 1), (0, 2, 2), "cleft"), KindBox((1, 0, 0), (1, 0, 0), "wedge")])
    assert inside.sum() == 4 + 1 and inside[0, 2, 2] and inside[1, 0, 0] and not inside[0, 0, 0]
