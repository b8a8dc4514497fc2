import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from nnunet_fracture.evaluation.detection_metrics import detection_metrics, vertebra_items


def test_three_cases_by_hand_and_like_sklearn():
    # case scores (max P): fractured 0.8, fracture-free 0.9, fractured 0.95
    scores, labels = np.array([0.8, 0.9, 0.95]), np.array([True, False, True])
    result = detection_metrics(scores, labels, threshold=0.85)
    # AUC = P(score of a fractured case > score of a fracture-free one) = (0 + 1) / 2
    assert result.roc_auc == pytest.approx(0.5) == roc_auc_score(labels, scores)
    # ranking 0.95+ 0.9- 0.8+: AP = 1/2 * 1 + 1/2 * 2/3
    assert result.average_precision == pytest.approx(5 / 6)
    assert result.average_precision == pytest.approx(average_precision_score(labels, scores))
    # at 0.85: 0.9 and 0.95 called fracture
    assert (result.tp, result.fp, result.fn, result.tn) == (1, 1, 1, 0)
    assert result.sensitivity == 0.5 and result.specificity == 0.0
    assert result.as_dict()["roc_auc"] == pytest.approx(0.5) and "note" not in result.as_dict()


def test_random_scores_match_sklearn():
    rng = np.random.default_rng(3)
    scores = rng.random(200).round(2)  # ties included
    labels = rng.random(200) < 0.3
    result = detection_metrics(scores, labels)
    assert result.roc_auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result.average_precision == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("labels", [[True, True], [False, False], []])
def test_one_class_gives_nan_and_a_note(labels):
    result = detection_metrics(np.full(len(labels), 0.7), np.array(labels, bool))
    assert math.isnan(result.roc_auc) and math.isnan(result.average_precision) and result.note
    d = result.as_dict()
    assert d["roc_auc"] is None and d["average_precision"] is None and d["note"] == result.note
    if labels and labels[0]:
        assert result.sensitivity == 1.0 and math.isnan(result.specificity)
    elif labels:
        assert result.specificity == 0.0 and math.isnan(result.sensitivity)


def test_mask_scores_any_threshold_means_non_empty():
    result = detection_metrics(np.array([1.0, 0.0, 1.0]), np.array([True, True, False]), threshold=1.0)
    assert (result.tp, result.fn, result.fp, result.tn) == (1, 1, 1, 0)


def test_detection_errors():
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        detection_metrics(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="threshold"):
        detection_metrics(np.zeros(2), np.zeros(2), threshold=1.5)
    with pytest.raises(ValueError, match="NaN"):
        detection_metrics(np.array([np.nan]), np.array([True]))


def test_vertebra_items_by_hand():
    # 1 x 2 x 6: L1 (20) on x 0-1, L2 (21) on x 2-3, no vertebra on x 4-5
    vertebrae = np.array([[[20, 20, 21, 21, 0, 0], [20, 20, 21, 21, 0, 0]]], np.uint16)
    gt = np.zeros((1, 2, 6), bool)
    gt[0, 0, 2] = gt[0, 1, 3] = True  # 2 fracture voxels in L2
    gt[0, 0, 5] = True  # one outside every vertebra: belongs to no item
    p = np.array([[[0.1, 0.4, 0.2, 0.3, 0.9, 0.0], [0.0, 0.0, 0.25, 0.0, 0.0, 0.0]]])
    table = vertebra_items(vertebrae, gt, p)
    assert table["vertebra"].tolist() == [20, 21] and table["vertebra_name"].tolist() == ["L1", "L2"]
    assert table["voxels"].tolist() == [4, 4] and table["fracture_voxels"].tolist() == [0, 2]
    assert table["score"].tolist() == pytest.approx([0.4, 0.3])  # 0.9 lies outside both vertebrae
    assert table["label"].tolist() == [False, True]
    stricter = vertebra_items(vertebrae, gt, p, min_fracture_voxels=3)
    assert stricter["label"].tolist() == [False, False]
    # predicted-mask scores
    mask_scores = vertebra_items(vertebrae, gt, p >= 0.35)
    assert mask_scores["score"].tolist() == [1.0, 0.0]


def test_vertebra_items_unknown_label_and_no_vertebra():
    table = vertebra_items(np.array([[[0, 99]]], np.int32), np.array([[[1, 0]]]), np.array([[[0.5, 0.2]]]))
    assert table["vertebra"].tolist() == [99] and table["vertebra_name"].tolist() == [""]
    assert not table["label"].any()
    empty = vertebra_items(np.zeros((1, 1, 2), np.uint8), np.zeros((1, 1, 2)), np.zeros((1, 1, 2)))
    assert len(empty) == 0 and list(empty.columns)[-1] == "label"


def test_vertebra_items_errors():
    with pytest.raises(ValueError, match="same shape"):
        vertebra_items(np.zeros((1, 2, 2), np.uint8), np.zeros((1, 2, 3)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="integers"):
        vertebra_items(np.zeros((1, 1, 2), np.float32), np.zeros((1, 1, 2)), np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match="negative"):
        vertebra_items(np.full((1, 1, 2), -1, np.int16), np.zeros((1, 1, 2)), np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match="min_fracture_voxels"):
        vertebra_items(np.zeros((1, 1, 2), np.uint8), np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), 0)
