"""Threshold-free voxel metrics (PR curve, average precision, ROC-AUC, best-F1 threshold) that stream case by case.

:class:`ScoreHistogram` keeps, per probability bin, how many ground-truth-positive and -negative voxels fell in
it; it never keeps voxels, so any number of cases can be pooled (``a + b``) in constant memory.

Bin edges (:data:`EDGES`, thresholds too: a voxel is predicted positive when ``p >= edge``):

- ``0``;
- 3,000 log-spaced edges from ``1e-4`` up to (not including) ``0.05`` (each about 0.2 % above the previous);
- uniform edges ``k / 2000`` for ``k = 100 .. 2000``, i.e. 0.05, 0.0505, ..., 1 (step 5e-4).

4,902 edges in all. Bin ``i`` holds ``EDGES[i] <= p < EDGES[i + 1]``; the last bin holds ``p == 1`` exactly.
The low end is fine because the research this serves found its best threshold at the bottom of a 0.1 grid.
Comparisons are made in the probabilities' precision: float32 inputs are compared with float32-rounded edges
(so a float32 ``0.9`` counts as ``>= 0.9``), anything else in float64.

Curves are exact for probabilities that lie on edges; otherwise a probability acts as the lower edge of its
bin (ties within a bin), which moves average precision and ROC-AUC by well under 1e-3 in practice.

Degenerate cases (no exception, documented values):

- no ground-truth-positive voxel: recall is undefined, so average precision, ROC-AUC and the best threshold
  (and its Dice/IoU/precision/recall/F1) are NaN;
- no ground-truth-negative voxel: ROC-AUC is NaN (FPR undefined); average precision is 1.0 there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

LOG_LOW, LOG_HIGH, N_LOG = 1e-4, 0.05, 3000
UNIFORM_DENOMINATOR = 2000  # uniform edges k / 2000 from 0.05 to 1
CHUNK_VOXELS = 1 << 22  # voxels binned at a time

EDGES: np.ndarray = np.concatenate([
    [0.0],
    np.geomspace(LOG_LOW, LOG_HIGH, N_LOG + 1)[:-1],
    np.arange(int(LOG_HIGH * UNIFORM_DENOMINATOR), UNIFORM_DENOMINATOR + 1) / UNIFORM_DENOMINATOR,
])
EDGES.setflags(write=False)


@dataclass(frozen=True)
class BestThreshold:
    """The threshold with the highest F1 (= Dice); ties go to the highest threshold. NaN without positives."""

    threshold: float
    dice: float
    iou: float
    precision: float
    recall: float
    f1: float

    def as_dict(self) -> dict:
        return {k: _none_if_nan(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Curves:
    """Confusion counts and rates at every threshold of :data:`EDGES` (arrays aligned with ``thresholds``).

    Precision with no predicted voxel is 1.0 (scikit-learn's convention; it carries no weight in average
    precision because recall does not change there).
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @property
    def precision(self) -> np.ndarray:
        predicted = self.tp + self.fp
        return np.where(predicted > 0, self.tp / np.maximum(predicted, 1), 1.0)

    @property
    def recall(self) -> np.ndarray:
        positives = self.tp + self.fn
        return self.tp / positives if positives[0] > 0 else np.full(len(self.tp), np.nan)

    @property
    def fpr(self) -> np.ndarray:
        negatives = self.fp + self.tn
        return self.fp / negatives if negatives[0] > 0 else np.full(len(self.fp), np.nan)

    @property
    def f1(self) -> np.ndarray:
        """F1 = Dice = 2TP / (2TP + FP + FN); 0 where there is neither a prediction nor a positive."""
        denominator = 2 * self.tp + self.fp + self.fn
        return np.where(denominator > 0, 2 * self.tp / np.maximum(denominator, 1), 0.0)

    @property
    def iou(self) -> np.ndarray:
        denominator = self.tp + self.fp + self.fn
        return np.where(denominator > 0, self.tp / np.maximum(denominator, 1), 0.0)


class ScoreHistogram:
    """Positive and negative voxel counts per probability bin of :data:`EDGES`; add cases, merge with ``+``."""

    def __init__(self, positives: Optional[np.ndarray] = None, negatives: Optional[np.ndarray] = None):
        self.positives = np.zeros(len(EDGES), np.int64) if positives is None else np.asarray(positives, np.int64)
        self.negatives = np.zeros(len(EDGES), np.int64) if negatives is None else np.asarray(negatives, np.int64)
        if self.positives.shape != (len(EDGES),) or self.negatives.shape != (len(EDGES),):
            raise ValueError(f"counts must have shape ({len(EDGES)},), got {self.positives.shape} and "
                             f"{self.negatives.shape}")

    @property
    def n_bins(self) -> int:
        return len(EDGES)

    @property
    def n_positive(self) -> int:
        return int(self.positives.sum())

    @property
    def n_negative(self) -> int:
        return int(self.negatives.sum())

    def add(self, probabilities: np.ndarray, gt_mask: np.ndarray) -> "ScoreHistogram":
        """Count one case's voxels (in place; returns self).

        Args:
            probabilities: fracture probability per voxel, any shape, finite and within [0, 1].
            gt_mask: ground truth of the same shape, boolean or 0/1 (non-zero = positive).

        Raises:
            ValueError: shape mismatch (both shapes quoted), non-finite values or values outside [0, 1].
        """
        probabilities = np.asarray(probabilities)
        gt_mask = np.asarray(gt_mask)
        if probabilities.shape != gt_mask.shape:
            raise ValueError(f"probabilities shape {probabilities.shape} differs from ground-truth shape "
                             f"{gt_mask.shape}")
        if probabilities.dtype != np.float32:
            probabilities = probabilities.astype(np.float64)
        if probabilities.size:
            if not np.isfinite(probabilities).all():
                raise ValueError("probabilities contain NaN or infinite values")
            low, high = float(probabilities.min()), float(probabilities.max())
            if low < 0 or high > 1:
                raise ValueError(f"probabilities span [{low}, {high}], outside [0, 1]")
        edges = EDGES.astype(probabilities.dtype)
        flat_p, flat_gt = probabilities.reshape(-1), gt_mask.reshape(-1)
        for start in range(0, flat_p.size, CHUNK_VOXELS):  # bounded temporaries for large CTs
            bins = np.searchsorted(edges, flat_p[start:start + CHUNK_VOXELS], side="right") - 1
            positive = flat_gt[start:start + CHUNK_VOXELS].astype(bool)
            self.positives += np.bincount(bins[positive], minlength=len(EDGES))
            self.negatives += np.bincount(bins[~positive], minlength=len(EDGES))
        return self

    def __add__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        if not isinstance(other, ScoreHistogram):
            return NotImplemented
        return ScoreHistogram(self.positives + other.positives, self.negatives + other.negatives)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ScoreHistogram) and np.array_equal(self.positives, other.positives)
                and np.array_equal(self.negatives, other.negatives))

    def curves(self) -> Curves:
        """Counts at every threshold: ``tp[k]`` = positives with ``p >= EDGES[k]``."""
        tp = np.cumsum(self.positives[::-1])[::-1]
        fp = np.cumsum(self.negatives[::-1])[::-1]
        return Curves(np.array(EDGES), tp, fp, self.n_positive - tp, self.n_negative - fp)

    def average_precision(self) -> float:
        """Sum over thresholds (high to low) of (R_n - R_{n-1}) * P_n, step-wise like scikit-learn's
        ``average_precision_score``; NaN without positive voxels."""
        if self.n_positive == 0:
            return float("nan")
        c = self.curves()
        recall, precision = c.recall[::-1], c.precision[::-1]  # thresholds descending
        return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))

    def roc_auc(self) -> float:
        """Area under the ROC curve (trapezoid over FPR/TPR); NaN without positive or without negative voxels."""
        if self.n_positive == 0 or self.n_negative == 0:
            return float("nan")
        c = self.curves()
        fpr = np.concatenate([[0.0], c.fpr[::-1]])
        tpr = np.concatenate([[0.0], c.recall[::-1]])
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))

    def best_threshold(self) -> BestThreshold:
        """The edge with the highest F1 (ties: the highest edge); all NaN without positive voxels."""
        if self.n_positive == 0:
            nan = float("nan")
            return BestThreshold(nan, nan, nan, nan, nan, nan)
        c = self.curves()
        f1 = c.f1
        k = len(f1) - 1 - int(np.argmax(f1[::-1]))
        return BestThreshold(threshold=float(c.thresholds[k]), dice=float(f1[k]), iou=float(c.iou[k]),
                             precision=float(c.precision[k]), recall=float(c.recall[k]), f1=float(f1[k]))

    def summary(self) -> dict:
        """JSON-ready numbers (NaN written as None)."""
        return {"pr_auc": _none_if_nan(self.average_precision()), "roc_auc": _none_if_nan(self.roc_auc()),
                "best_threshold": self.best_threshold().as_dict(), "rule": "fracture where probability >= threshold",
                "n_bins": self.n_bins,
                "positive_voxels": self.n_positive, "negative_voxels": self.n_negative}


def _none_if_nan(value: float) -> Optional[float]:
    return None if value is None or np.isnan(value) else float(value)
