"""Voxel overlap metrics from confusion counts.

Conventions for empty sets (documented in the README and tested):
- Dice and IoU of an empty prediction against an empty ground truth are 1.0 (nothing to find, nothing found);
  either one empty and the other not gives 0.0.
- Precision with no predicted voxel is 1.0 when the ground truth is empty too, else 0.0; recall with no
  ground-truth voxel is 1.0 when nothing was predicted, else 0.0. This keeps every per-case number finite,
  so means over cases never silently drop fracture-free cases.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    """True positives, false positives and false negatives of a binary prediction (voxel counts)."""

    tp: int
    fp: int
    fn: int

    @classmethod
    def from_masks(cls, pred: np.ndarray, gt: np.ndarray) -> "Confusion":
        """Count from two boolean (or 0/1) arrays of the same shape.

        Raises:
            ValueError: if the shapes differ.
        """
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
        pred = np.asarray(pred, dtype=bool)
        gt = np.asarray(gt, dtype=bool)
        tp = int(np.count_nonzero(pred & gt))
        return cls(tp=tp, fp=int(np.count_nonzero(pred)) - tp, fn=int(np.count_nonzero(gt)) - tp)

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def dice(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else 2 * self.tp / denominator

    @property
    def iou(self) -> float:
        denominator = self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else self.tp / denominator

    @property
    def precision(self) -> float:
        predicted = self.tp + self.fp
        if predicted == 0:
            return 1.0 if self.fn == 0 else 0.0
        return self.tp / predicted

    @property
    def recall(self) -> float:
        actual = self.tp + self.fn
        if actual == 0:
            return 1.0 if self.fp == 0 else 0.0
        return self.tp / actual

    def as_dict(self) -> dict[str, float]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "dice": self.dice, "iou": self.iou,
                "precision": self.precision, "recall": self.recall}
