"""Per-slice (2.5D) metrics along each axis: every 2D slice of every case is one item.

Axes are the numpy axes of the (z, y, x) arrays SimpleITK gives: ``axial`` = axis 0 (slices ``[k, :, :]``),
``coronal`` = axis 1 (``[:, j, :]``), ``sagittal`` = axis 2 (``[:, :, i]``) — for an image in the usual
axial acquisition; the names follow the array axes, not the direction cosines.

Per axis, two kinds of number:

- **Slice Dice** of the predicted mask (the ``<case>.nii.gz`` segmentation): each slice's Dice =
  2 TP / (2 TP + FP + FN) counted on that slice. Slices where both the ground truth and the prediction are
  empty are left out (they would swamp the mean with 1.0s). ``mean_slice_dice`` in ``summary.json`` is the mean
  over all remaining slices of all cases (each slice weighs the same); the per-case column
  ``slice_dice_<axis>`` is the mean over the case's remaining slices, and 1.0 when none remain (empty
  prediction on empty ground truth, as for 3D Dice).
- **Slice detection**: a slice is positive when it holds a ground-truth fracture voxel; its score is the
  maximum fracture probability on the slice (or whether the predicted mask touches it, when not every case has
  probabilities; see :mod:`nnunet_fracture.evaluation.detection_metrics`). ROC-AUC, average precision, and
  sensitivity/specificity at the threshold over all slices of all cases.

Only a few numbers per slice are kept (counts and a score), a few hundred per case and axis, so this streams
like the voxel histogram.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnunet_fracture.evaluation.detection_metrics import detection_metrics, none_if_nan

AXES: dict[str, int] = {"axial": 0, "coronal": 1, "sagittal": 2}
"""Axis name -> numpy axis of a (z, y, x) array."""

DEFINITION = ("per axis (axial = numpy axis 0 = z, coronal = 1 = y, sagittal = 2 = x) every 2D slice is an "
              "item. mean_slice_dice: mean Dice of the predicted mask over the slices where the ground truth or "
              "the prediction is non-empty, over all cases. Detection: a slice is positive when it holds a "
              "ground-truth fracture voxel, its score is the slice's maximum score; called positive when score "
              ">= threshold.")


@dataclass(frozen=True)
class SliceCounts:
    """Per-slice counts of one case along one axis (arrays of length = number of slices)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    score: np.ndarray

    @property
    def label(self) -> np.ndarray:
        """Slices holding a ground-truth fracture voxel."""
        return (self.tp + self.fn) > 0

    @property
    def dice(self) -> np.ndarray:
        """Per-slice Dice; NaN where ground truth and prediction are both empty."""
        denominator = 2 * self.tp + self.fp + self.fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, 2 * self.tp / np.maximum(denominator, 1), np.nan)

    def mean_dice(self) -> float:
        """Mean slice Dice over the slices where something is present; 1.0 when nothing is anywhere."""
        dice = self.dice
        present = ~np.isnan(dice)
        return float(dice[present].mean()) if present.any() else 1.0


def slice_counts(pred_mask: np.ndarray, gt_mask: np.ndarray, score_map: np.ndarray) -> dict[str, SliceCounts]:
    """Per-slice counts along every axis of :data:`AXES` for one case.

    Args:
        pred_mask: predicted fracture mask (bool or 0/1), 3D.
        gt_mask: ground-truth fracture mask, same shape.
        score_map: fracture probability, or the predicted mask itself for mask scores, same shape.

    Raises:
        ValueError: arrays that are not 3D or not of one shape (all shapes quoted).
    """
    if not (pred_mask.ndim == 3 and pred_mask.shape == gt_mask.shape == score_map.shape):
        raise ValueError(f"prediction {pred_mask.shape}, ground truth {gt_mask.shape} and scores "
                         f"{score_map.shape} must be 3D arrays of one shape")
    pred, gt = pred_mask.astype(bool, copy=False), gt_mask.astype(bool, copy=False)
    overlap = pred & gt
    out = {}
    for name, axis in AXES.items():
        others = tuple(a for a in range(3) if a != axis)
        tp = np.count_nonzero(overlap, axis=others)
        out[name] = SliceCounts(tp=tp, fp=np.count_nonzero(pred, axis=others) - tp,
                                fn=np.count_nonzero(gt, axis=others) - tp,
                                score=score_map.max(axis=others).astype(_score_dtype(score_map)))
    return out


def _score_dtype(score_map: np.ndarray) -> type:
    """float32 probabilities keep float32 scores (compared with the threshold in float32); others float64."""
    return np.float32 if score_map.dtype == np.float32 else np.float64


@dataclass
class SliceMetrics:
    """Collects :class:`SliceCounts` case by case; :meth:`summary` pools them per axis."""

    threshold: float = 0.5
    counts: dict[str, list[SliceCounts]] = field(default_factory=lambda: {name: [] for name in AXES})

    def add(self, pred_mask: np.ndarray, gt_mask: np.ndarray, score_map: np.ndarray) -> dict[str, float]:
        """Add one case; return its ``metrics.csv`` columns ``slice_dice_<axis>``."""
        columns = {}
        for name, counts in slice_counts(pred_mask, gt_mask, score_map).items():
            self.counts[name].append(counts)
            columns[f"slice_dice_{name}"] = counts.mean_dice()
        return columns

    def summary(self) -> dict:
        """Per axis: mean slice Dice and the slice-detection numbers (``n_items`` = slices), JSON-ready."""
        out: dict = {"definition": DEFINITION}
        for name, axis in AXES.items():
            parts = self.counts[name]
            dice = np.concatenate([c.dice for c in parts]) if parts else np.zeros(0)
            dice = dice[~np.isnan(dice)]
            scores, labels = self.scores_and_labels(name)
            out[name] = {"axis": axis, "n_dice_slices": int(dice.size),
                         "mean_slice_dice": none_if_nan(float(dice.mean())) if dice.size else None,
                         **detection_metrics(scores, labels, self.threshold).as_dict()}
        return out

    def scores_and_labels(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Scores and labels of every slice along axis ``name`` of every case added so far."""
        parts = self.counts[name]
        if not parts:
            return np.zeros(0), np.zeros(0, bool)
        return np.concatenate([c.score for c in parts]), np.concatenate([c.label for c in parts])
