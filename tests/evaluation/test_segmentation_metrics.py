import numpy as np
import pytest

from nnunet_fracture.evaluation.segmentation_metrics import Confusion


def test_counts_and_metrics_by_hand():
    # gt: 4 voxels; pred: 3 voxels of which 2 overlap -> tp 2, fp 1, fn 2
    gt = np.zeros((2, 3, 3), bool)
    gt[0, 0, :3] = True
    gt[1, 1, 1] = True
    pred = np.zeros_like(gt)
    pred[0, 0, 1:3] = True
    pred[1, 2, 2] = True
    c = Confusion.from_masks(pred, gt)
    assert (c.tp, c.fp, c.fn) == (2, 1, 2)
    assert c.dice == pytest.approx(4 / 7)
    assert c.iou == pytest.approx(2 / 5)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 4)


@pytest.mark.parametrize(
    "pred_any, gt_any, dice, precision, recall",
    [
        (False, False, 1.0, 1.0, 1.0),  # nothing to find, nothing found
        (True, False, 0.0, 0.0, 0.0),  # false positive case
        (False, True, 0.0, 0.0, 0.0),  # missed fracture
    ],
)
def test_empty_conventions(pred_any, gt_any, dice, precision, recall):
    gt = np.zeros((4, 4), bool)
    pred = np.zeros((4, 4), bool)
    gt[1, 1] = gt_any
    pred[2, 2] = pred_any
    c = Confusion.from_masks(pred, gt)
    assert (c.dice, c.iou, c.precision, c.recall) == (dice, dice, precision, recall)


def test_pooling_adds_counts():
    a, b = Confusion(1, 2, 3), Confusion(10, 20, 30)
    assert a + b == Confusion(11, 22, 33)
    assert (a + b).dice == pytest.approx(22 / (22 + 22 + 33))


def test_shape_mismatch_quotes_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(3, 3\)"):
        Confusion.from_masks(np.zeros((2, 2)), np.zeros((3, 3)))
