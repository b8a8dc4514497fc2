import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from nnunet_fracture.evaluation.threshold_curves import EDGES, ScoreHistogram


def test_edges_fine_at_low_end_and_sorted():
    assert EDGES[0] == 0.0 and EDGES[-1] == 1.0 and EDGES[1] == 1e-4
    assert np.all(np.diff(EDGES) > 0)
    assert 2000 < len(EDGES) < 5000
    assert np.sum(EDGES < 1e-3) > 300  # hundreds of thresholds below 0.001
    for value in (0.05, 0.1, 0.3, 0.5, 0.7, 0.9):
        assert value in EDGES


def test_six_voxels_by_hand():
    # probabilities on bin edges, sorted high to low; labels 1 0 1 1 0 0
    p = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    gt = np.array([1, 0, 1, 1, 0, 0])
    h = ScoreHistogram().add(p, gt)
    # AP: thresholds 0.9 (R 1/3, P 1), 0.8 (R 1/3, P 1/2), 0.7 (R 2/3, P 2/3), 0.3 (R 1, P 3/4), lower: R unchanged
    #     = 1/3 * 1 + 0 * 1/2 + 1/3 * 2/3 + 1/3 * 3/4 = 29/36
    assert h.average_precision() == pytest.approx(29 / 36, abs=1e-12)
    # ROC-AUC = P(score of a positive > score of a negative): 0.9 beats 3, 0.7 beats 2, 0.3 beats 2 -> 7/9
    assert h.roc_auc() == pytest.approx(7 / 9, abs=1e-12)
    # best F1 at threshold 0.3: TP 3, FP 1, FN 0 -> F1 = 6/7, precision 3/4, recall 1, IoU 3/4
    best = h.best_threshold()
    assert best.threshold == pytest.approx(0.3)
    assert best.f1 == pytest.approx(6 / 7) and best.dice == best.f1
    assert best.precision == pytest.approx(0.75) and best.recall == 1.0 and best.iou == pytest.approx(0.75)
    assert h.n_positive == 3 and h.n_negative == 3
    # both numbers agree with scikit-learn exactly here
    assert h.average_precision() == pytest.approx(average_precision_score(gt, p), abs=1e-12)
    assert h.roc_auc() == pytest.approx(roc_auc_score(gt, p), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_agrees_with_sklearn_balanced(seed):
    rng = np.random.default_rng(seed)
    gt = rng.random(5000) < 0.3
    p = np.clip(rng.normal(0.35 + 0.3 * gt, 0.2), 0, 1)
    h = ScoreHistogram().add(p, gt)
    assert h.average_precision() == pytest.approx(average_precision_score(gt, p), abs=1e-3)
    assert h.roc_auc() == pytest.approx(roc_auc_score(gt, p), abs=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_agrees_with_sklearn_heavy_imbalance_low_probabilities(seed):
    rng = np.random.default_rng(seed)
    gt = rng.random(40000) < 0.005  # 0.5 % positives
    # probabilities mostly below 0.01: log-uniform, positives shifted up
    p = np.exp(rng.uniform(np.log(1e-4), np.log(1e-2), gt.size) + 1.5 * gt * rng.random(gt.size))
    p = np.clip(p, 0, 1).astype(np.float32)
    assert gt.sum() > 100 and np.mean(p < 0.01) > 0.9
    h = ScoreHistogram().add(p, gt)
    assert h.average_precision() == pytest.approx(average_precision_score(gt, p), abs=1e-3)
    assert h.roc_auc() == pytest.approx(roc_auc_score(gt, p), abs=1e-3)


def test_pooling_equals_concatenation_exactly():
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        p = rng.random(500).astype(dtype)
        p[:50] = rng.choice(EDGES, 50)  # values sitting exactly on edges too
        gt = rng.random(500) < 0.3
        a, b = ScoreHistogram().add(p[:200], gt[:200]), ScoreHistogram().add(p[200:], gt[200:])
        whole = ScoreHistogram().add(p, gt)
        assert a + b == whole
        assert np.array_equal((a + b).positives, whole.positives) and (a + b).n_negative == whole.n_negative
        assert (a + b).average_precision() == whole.average_precision()
        assert (a + b).roc_auc() == whole.roc_auc()
    # cases of different shapes stream into one accumulator like two pooled ones
    p1, g1 = rng.random((4, 5, 6)).astype(np.float32), rng.random((4, 5, 6)) < 0.2
    p2, g2 = rng.random((3, 7)), rng.random((3, 7)) < 0.5
    assert ScoreHistogram().add(p1, g1) + ScoreHistogram().add(p2, g2) == ScoreHistogram().add(p1, g1).add(p2, g2)


def test_best_threshold_found_at_low_end():
    gt = np.array([1] * 10 + [0] * 1000)
    p = np.where(gt == 1, 3e-4, 1e-4)
    best = ScoreHistogram().add(p, gt).best_threshold()
    assert 1e-4 < best.threshold <= 3e-4 < 1e-3
    assert best.f1 == 1.0 and best.dice == 1.0 and best.precision == 1.0 and best.recall == 1.0


def test_no_positive_voxel():
    h = ScoreHistogram().add(np.array([0.1, 0.5, 0.9]), np.zeros(3, bool))
    assert math.isnan(h.average_precision()) and math.isnan(h.roc_auc())
    assert math.isnan(h.best_threshold().threshold) and math.isnan(h.best_threshold().dice)
    summary = h.summary()
    assert summary["pr_auc"] is None and summary["roc_auc"] is None
    assert summary["best_threshold"]["threshold"] is None and summary["negative_voxels"] == 3


def test_no_negative_voxel():
    h = ScoreHistogram().add(np.array([0.1, 0.5, 0.9]), np.ones(3, bool))
    assert math.isnan(h.roc_auc())
    assert h.average_precision() == 1.0
    assert h.best_threshold().f1 == 1.0


def test_empty_accumulator():
    h = ScoreHistogram()
    assert math.isnan(h.average_precision()) and math.isnan(h.roc_auc())
    assert h.add(np.zeros((0, 3)), np.zeros((0, 3), bool)).n_positive == 0


def test_probability_one_and_zero_counted():
    h = ScoreHistogram().add(np.array([0.0, 1.0, 1.0]), np.array([0, 1, 0]))
    curves = h.curves()
    assert curves.tp[-1] == 1 and curves.fp[-1] == 1  # threshold 1: p >= 1
    assert curves.tp[0] == 1 and curves.fp[0] == 2  # threshold 0: everything


@pytest.mark.parametrize("bad", [np.array([0.5, 1.01]), np.array([-0.1, 0.5]), np.array([np.nan, 0.5]),
                                 np.array([np.inf, 0.5])])
def test_bad_probabilities_rejected(bad):
    with pytest.raises(ValueError, match=r"outside \[0, 1\]|NaN or infinite"):
        ScoreHistogram().add(bad, np.array([0, 1]))


def test_shape_mismatch_quotes_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        ScoreHistogram().add(np.zeros((2, 3)), np.zeros((3, 2), bool))


def test_chunked_binning_matches_one_pass(monkeypatch):
    import nnunet_fracture.evaluation.threshold_curves as module

    rng = np.random.default_rng(3)
    p, gt = rng.random((7, 11, 13)).astype(np.float32), rng.random((7, 11, 13)) < 0.1
    one_pass = ScoreHistogram().add(p, gt)
    monkeypatch.setattr(module, "CHUNK_VOXELS", 100)
    assert ScoreHistogram().add(p, gt) == one_pass
