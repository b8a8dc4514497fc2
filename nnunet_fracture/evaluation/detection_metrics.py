"""Detection-level metrics: does an item (a slice, a case, a vertebra) contain fracture?

Every item has a **label** (ground truth: fracture present) and a **score**. ``evaluate`` uses one score
source for all items of a run:

- ``"probability"`` when every case has probabilities (``<case>.npz``): the item's score is the maximum
  fracture probability over its voxels;
- ``"mask"`` otherwise: 1.0 when the predicted mask has a voxel in the item, else 0.0 (scores of different
  kinds are never mixed in one curve).

Numbers (:func:`detection_metrics`):

- ``roc_auc`` and ``average_precision`` over all items, computed by scikit-learn (``roc_auc_score``,
  ``average_precision_score``); both are NaN (``null`` in JSON) with a ``note`` when there are no items or only
  one class (all positive or all negative), since a ranking needs both;
- at the operating threshold ``t`` (in (0, 1]): an item is called positive when ``score >= t``, compared in the
  scores' precision (float32 for nnU-Net probabilities, like the voxel histogram). For mask scores
  any ``t`` gives "the predicted mask is non-empty there". ``sensitivity = TP / (TP + FN)`` (NaN without
  positive items), ``specificity = TN / (TN + FP)`` (NaN without negative items), and the four counts.

Vertebra items (:func:`vertebra_items`): every non-zero value ``v`` of a vertebra label map (VerSe numbering) is
one item. Its score is the maximum score inside ``v``; it is labelled fractured when at least
``min_fracture_voxels`` (default 1, i.e. any voxel) ground-truth fracture voxels lie inside ``v``. Fracture
voxels outside every vertebra belong to no item; ``evaluate`` reports how many there are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from nnunet_fracture.dataset_conversion.vertebra_labels import LABEL_NAMES

SCORE_DESCRIPTIONS = {
    "probability": "maximum fracture probability over the item",
    "mask": "1 if the predicted mask has a voxel in the item, else 0 (not every case has probabilities)",
}


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as float if it lies in (0, 1], else raise ``ValueError``."""
    threshold = float(threshold)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    return threshold


@dataclass(frozen=True)
class DetectionResult:
    """Ranking and operating-point numbers of one set of scored items (see the module docstring)."""

    n_items: int
    n_positive: int
    n_negative: int
    roc_auc: float
    average_precision: float
    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    note: Optional[str] = None

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else math.nan

    def as_dict(self) -> dict:
        """JSON-ready numbers (NaN written as None); ``note`` only when there is one."""
        out = {"n_items": self.n_items, "n_positive": self.n_positive, "n_negative": self.n_negative,
               "roc_auc": none_if_nan(self.roc_auc), "average_precision": none_if_nan(self.average_precision),
               "threshold": self.threshold, "sensitivity": none_if_nan(self.sensitivity),
               "specificity": none_if_nan(self.specificity), "tp": self.tp, "fp": self.fp, "fn": self.fn,
               "tn": self.tn}
        if self.note:
            out["note"] = self.note
        return out


def detection_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> DetectionResult:
    """ROC-AUC, average precision, and sensitivity/specificity at ``threshold`` of scored binary items.

    Args:
        scores: one finite score per item (higher = more likely fracture). float32 scores are compared with
            the threshold in float32 (a float32 0.9 counts as >= 0.9, as in the voxel histogram), others in
            float64.
        labels: one label per item, boolean or 0/1.
        threshold: items with ``score >= threshold`` are called positive; in (0, 1].

    Raises:
        ValueError: different lengths, non-finite scores, or a threshold outside (0, 1].
    """
    scores = np.asarray(scores).ravel()
    if scores.dtype != np.float32:  # float32 scores stay float32: compared with the threshold in float32
        scores = scores.astype(np.float64)
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels; there must be one score per item")
    if not np.isfinite(scores).all():
        raise ValueError("detection scores contain NaN or infinite values")
    threshold = check_threshold(threshold)
    n_positive = int(labels.sum())
    n_negative = int(labels.size - n_positive)
    called = scores >= threshold
    tp, fp = int((called & labels).sum()), int((called & ~labels).sum())
    roc_auc = average_precision = math.nan
    note = None
    if labels.size == 0:
        note = "no items"
    elif n_positive == 0 or n_negative == 0:
        note = (f"only {'fractured' if n_negative == 0 else 'fracture-free'} items ({labels.size}); ROC-AUC and "
                f"average precision need both classes")
    else:
        roc_auc = float(roc_auc_score(labels, scores))
        average_precision = float(average_precision_score(labels, scores))
    return DetectionResult(n_items=int(labels.size), n_positive=n_positive, n_negative=n_negative, roc_auc=roc_auc,
                           average_precision=average_precision, threshold=threshold, tp=tp, fp=fp,
                           fn=n_positive - tp, tn=n_negative - fp, note=note)


def vertebra_items(vertebrae: np.ndarray, gt_mask: np.ndarray, score_map: np.ndarray,
                   min_fracture_voxels: int = 1) -> pd.DataFrame:
    """One row per vertebra (non-zero label) of one case: its score and whether it is fractured.

    Args:
        vertebrae: integer vertebra label map (0 = no vertebra), array order (z, y, x).
        gt_mask: ground-truth fracture mask, same shape (non-zero = fracture).
        score_map: fracture probability (float) or predicted mask (bool / 0-1), same shape.
        min_fracture_voxels: a vertebra is fractured when at least this many fracture voxels lie inside it.

    Returns:
        Columns ``vertebra`` (label value), ``vertebra_name`` (VerSe name, empty for other values),
        ``voxels``, ``fracture_voxels``, ``score``, ``label`` (bool), sorted by label value.

    Raises:
        ValueError: shape mismatch (all shapes quoted), a non-integer or negative label map, or
            ``min_fracture_voxels < 1``.
    """
    vertebrae, gt_mask, score_map = np.asarray(vertebrae), np.asarray(gt_mask), np.asarray(score_map)
    if not (vertebrae.shape == gt_mask.shape == score_map.shape):
        raise ValueError(f"vertebra map {vertebrae.shape}, ground truth {gt_mask.shape} and scores "
                         f"{score_map.shape} must have the same shape")
    if vertebrae.dtype.kind not in "iu":
        raise ValueError(f"a vertebra label map must hold integers, got {vertebrae.dtype}")
    if vertebrae.size and vertebrae.min() < 0:
        raise ValueError(f"a vertebra label map must not hold negative values (found {vertebrae.min()})")
    if isinstance(min_fracture_voxels, bool) or int(min_fracture_voxels) != min_fracture_voxels \
            or min_fracture_voxels < 1:
        raise ValueError(f"min_fracture_voxels must be a whole number >= 1, got {min_fracture_voxels!r}")
    gt = gt_mask.astype(bool, copy=False)
    # fracture voxels per label: the fracture is small, so index the label map with it
    fracture_counts = np.bincount(vertebrae[gt].astype(np.int64), minlength=1)
    rows = []
    # bounding-box slices per label value in one pass; then each vertebra is handled inside its box only
    for value, box in enumerate(ndimage.find_objects(vertebrae), start=1):
        if box is None:
            continue
        inside = vertebrae[box] == value
        rows.append({"vertebra": value, "vertebra_name": LABEL_NAMES.get(value, ""),
                     "voxels": int(np.count_nonzero(inside)),
                     "fracture_voxels": int(fracture_counts[value]) if value < fracture_counts.size else 0,
                     "score": score_map[box][inside].max()})
    table = pd.DataFrame(rows, columns=["vertebra", "vertebra_name", "voxels", "fracture_voxels", "score"])
    # float32 probabilities keep float32 scores (exact, and compared with a threshold in float32)
    table["score"] = table["score"].astype(np.float32 if score_map.dtype == np.float32 else np.float64)
    table["label"] = table["fracture_voxels"] >= min_fracture_voxels
    return table


def none_if_nan(value: Optional[float]) -> Optional[float]:
    """``None`` for None or NaN, else the value as float (JSON has no NaN)."""
    return None if value is None or np.isnan(value) else float(value)
