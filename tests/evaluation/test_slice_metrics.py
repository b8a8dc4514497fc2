import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from nnunet_fracture.evaluation.slice_metrics import AXES, SliceMetrics, slice_counts


def _tiny_case():
    """3 x 3 x 3 (z, y, x): ground truth {000, 001, 201}, prediction {000, 201, 122}."""
    gt = np.zeros((3, 3, 3), bool)
    pred = np.zeros((3, 3, 3), bool)
    for z, y, x in ((0, 0, 0), (0, 0, 1), (2, 0, 1)):
        gt[z, y, x] = True
    for z, y, x in ((0, 0, 0), (2, 0, 1), (1, 2, 2)):
        pred[z, y, x] = True
    p = np.zeros((3, 3, 3), np.float32)
    for (z, y, x), value in {(0, 0, 0): 0.9, (2, 0, 1): 0.6, (1, 2, 2): 0.7, (0, 0, 1): 0.2, (1, 1, 1): 0.3,
                             (2, 2, 2): 0.1}.items():
        p[z, y, x] = value
    return pred, gt, p


def test_axes_are_numpy_axes_of_zyx():
    assert AXES == {"axial": 0, "coronal": 1, "sagittal": 2}


def test_per_slice_counts_dice_and_scores_by_hand():
    pred, gt, p = _tiny_case()
    counts = slice_counts(pred, gt, p)
    # axial z: z0 gt{000,001} pred{000} -> TP1 FN1, Dice 2/3; z1 pred{122} only -> 0; z2 {201} both -> 1
    axial = counts["axial"]
    assert axial.tp.tolist() == [1, 0, 1] and axial.fp.tolist() == [0, 1, 0] and axial.fn.tolist() == [1, 0, 0]
    assert axial.dice == pytest.approx([2 / 3, 0.0, 1.0])
    assert axial.mean_dice() == pytest.approx(5 / 9)
    assert axial.label.tolist() == [True, False, True]
    assert axial.score == pytest.approx([0.9, 0.7, 0.6])
    # coronal y: y0 gt{000,001,201} pred{000,201} -> 4/5; y1 empty in both -> left out; y2 pred{122} -> 0
    coronal = counts["coronal"]
    assert coronal.dice[0] == pytest.approx(0.8) and np.isnan(coronal.dice[1]) and coronal.dice[2] == 0
    assert coronal.mean_dice() == pytest.approx(0.4)
    assert coronal.label.tolist() == [True, False, False]
    assert coronal.score == pytest.approx([0.9, 0.3, 0.7])
    # sagittal x: x0 {000} both -> 1; x1 gt{001,201} pred{201} -> 2/3; x2 pred{122} -> 0
    sagittal = counts["sagittal"]
    assert sagittal.dice == pytest.approx([1.0, 2 / 3, 0.0])
    assert sagittal.mean_dice() == pytest.approx(5 / 9)
    assert sagittal.label.tolist() == [True, True, False]
    assert sagittal.score == pytest.approx([0.9, 0.6, 0.7])


def test_summary_pools_slices_of_cases_by_hand_and_like_sklearn():
    pred, gt, p = _tiny_case()
    metrics = SliceMetrics(threshold=0.5)
    columns = metrics.add(pred, gt, p)
    assert columns == pytest.approx({"slice_dice_axial": 5 / 9, "slice_dice_coronal": 0.4,
                                     "slice_dice_sagittal": 5 / 9})
    empty = np.zeros((3, 3, 3), bool)
    # empty prediction on empty ground truth: nothing to find, nothing found -> 1.0, like 3D Dice
    assert metrics.add(empty, empty, np.zeros((3, 3, 3), np.float32)) == {
        "slice_dice_axial": 1.0, "slice_dice_coronal": 1.0, "slice_dice_sagittal": 1.0}
    summary = metrics.summary()
    axial = summary["axial"]
    # the empty case's slices add to detection (3 negatives scored 0) but not to the slice Dice mean
    assert axial["n_items"] == 6 and axial["n_positive"] == 2 and axial["n_dice_slices"] == 3
    assert axial["mean_slice_dice"] == pytest.approx(5 / 9)
    # scores 0.9+ 0.7- 0.6+ 0- 0- 0-: 0.9 beats 4 negatives, 0.6 beats 3 of 4 -> AUC 7/8;
    # AP = 1/2 * 1 + 1/2 * 2/3
    assert axial["roc_auc"] == pytest.approx(7 / 8) and axial["average_precision"] == pytest.approx(5 / 6)
    assert (axial["tp"], axial["fp"], axial["fn"], axial["tn"]) == (2, 1, 0, 3)
    assert axial["sensitivity"] == 1.0 and axial["specificity"] == pytest.approx(0.75)
    assert summary["coronal"]["mean_slice_dice"] == pytest.approx(0.4)  # (0.8 + 0) / 2 slices
    assert summary["coronal"]["roc_auc"] == pytest.approx(1.0)
    for name in AXES:
        scores, labels = metrics.scores_and_labels(name)
        assert summary[name]["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
        assert summary[name]["average_precision"] == pytest.approx(average_precision_score(labels, scores))


def test_only_negative_slices_give_null_auc_with_note():
    empty = np.zeros((2, 2, 2), bool)
    metrics = SliceMetrics()
    metrics.add(empty, empty, np.zeros((2, 2, 2)))
    axial = metrics.summary()["axial"]
    assert axial["roc_auc"] is None and axial["average_precision"] is None and "note" in axial
    assert axial["mean_slice_dice"] is None and axial["sensitivity"] is None and axial["specificity"] == 1.0


def test_shape_mismatch_quotes_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2, 2\).*\(2, 2, 3\)"):
        slice_counts(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)), np.zeros((2, 2, 2)))
