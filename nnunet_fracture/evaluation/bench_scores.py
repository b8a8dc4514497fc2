"""The quality bench's numbers for one method on a set of held-out cases, pooled over voxels and cases.

Each case contributes its ground-truth mask, the method's binary mask over the whole volume, its probability map
(or any score in [0, 1]) and its boxes, each with the fracture kind it holds. From these :class:`BenchScore`
reports what ``benchmarks/quality.py`` writes for every arm and seed:

- ``whole_volume_dice`` / ``_precision`` / ``_recall``: the mask against the truth, voxels pooled over the cases;
- ``in_box_dice``: the mask restricted to the case's boxes (or the arm's own box-constrained mask) - how well a
  method delineates a fracture once it is found; ``in_box_precision`` / ``_recall`` tell a mask that is too big
  from one that is too small;
- ``pr_auc`` and ``best_f1``: threshold-free, from the probability map over whole volumes;
- ``detection_auc``: case level, the maximum probability of a case against "the case has a fracture" (ROC AUC);
- ``fp_voxels_per_normal_case``: predicted voxels in fracture-free cases, averaged over those cases;
- ``recall_by_kind``: per fracture kind, the share of its true voxels that the mask finds (voxels pooled).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

import numpy as np

from nnunet_fracture.evaluation.detection_metrics import detection_metrics, none_if_nan
from nnunet_fracture.evaluation.segmentation_metrics import Confusion
from nnunet_fracture.evaluation.threshold_curves import ScoreHistogram

KEYS = ("whole_volume_dice", "whole_volume_precision", "whole_volume_recall", "in_box_dice", "pr_auc", "best_f1",
        "detection_auc", "fp_voxels_per_normal_case", "recall_by_kind")


@dataclass(frozen=True)
class KindBox:
    """One box of a case: inclusive voxel bounds in numpy (z, y, x) order, the fracture kind it holds and the
    box's label (the vertebra it names, where known)."""

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    kind: str
    label: str = ""

    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b + 1) for a, b in zip(self.lo, self.hi))  # type: ignore[return-value]


def boxes_mask(shape: tuple[int, ...], boxes: list[KindBox]) -> np.ndarray:
    """True inside any of ``boxes``."""
    inside = np.zeros(shape, dtype=bool)
    for box in boxes:
        inside[box.slices()] = True
    return inside


class BenchScore:
    """Accumulates cases (:meth:`add`) and reports the bench's keys (:meth:`as_dict`)."""

    def __init__(self) -> None:
        self.whole = Confusion(0, 0, 0)
        self.in_box = Confusion(0, 0, 0)
        self.histogram = ScoreHistogram()
        self.case_scores: list[float] = []
        self.case_labels: list[bool] = []
        self.normal_fp: list[int] = []
        self.kind_found: dict[str, int] = defaultdict(int)
        self.kind_total: dict[str, int] = defaultdict(int)

    def add(self, gt: np.ndarray, mask: np.ndarray, probability: np.ndarray, boxes: list[KindBox],
            in_box_mask: Optional[np.ndarray] = None) -> None:
        """One case.

        Args:
            gt: ground-truth fracture mask.
            mask: the method's binary mask over the whole volume.
            probability: the method's score per voxel, in [0, 1].
            boxes: the case's boxes (none for a fracture-free case).
            in_box_mask: the method's box-constrained mask (a pseudo-mask); default ``mask`` inside the boxes.

        Raises:
            ValueError: quoting both shapes, when the arrays differ in shape.
        """
        gt, mask = np.asarray(gt, dtype=bool), np.asarray(mask, dtype=bool)
        for name, array in (("mask", mask), ("probability", probability)) + (
                (("in_box_mask", in_box_mask),) if in_box_mask is not None else ()):
            if np.shape(array) != gt.shape:
                raise ValueError(f"{name} has shape {np.shape(array)}, the ground truth {gt.shape}")
        inside = boxes_mask(gt.shape, boxes)
        self.whole = self.whole + Confusion.from_masks(mask, gt)
        boxed = mask & inside if in_box_mask is None else np.asarray(in_box_mask, dtype=bool) & inside
        self.in_box = self.in_box + Confusion.from_masks(boxed, gt & inside)
        self.histogram.add(np.asarray(probability, dtype=np.float32), gt)
        self.case_scores.append(float(np.max(probability)) if np.size(probability) else 0.0)
        self.case_labels.append(bool(gt.any()))
        if not gt.any():
            self.normal_fp.append(int(mask.sum()))
        for box in boxes:
            truth = gt[box.slices()]
            self.kind_total[box.kind] += int(truth.sum())
            self.kind_found[box.kind] += int((truth & mask[box.slices()]).sum())

    def as_dict(self) -> dict:
        detection = detection_metrics(np.array(self.case_scores), np.array(self.case_labels, dtype=bool)).roc_auc
        best = self.histogram.best_threshold()
        return {
            "whole_volume_dice": none_if_nan(self.whole.dice),
            "whole_volume_precision": none_if_nan(self.whole.precision),
            "whole_volume_recall": none_if_nan(self.whole.recall),
            "in_box_dice": none_if_nan(self.in_box.dice),
            "in_box_precision": none_if_nan(self.in_box.precision),
            "in_box_recall": none_if_nan(self.in_box.recall),
            "pr_auc": none_if_nan(self.histogram.average_precision()),
            "best_f1": none_if_nan(best.f1),
            "best_threshold": none_if_nan(best.threshold),
            "detection_auc": none_if_nan(detection),
            "fp_voxels_per_normal_case": float(np.mean(self.normal_fp)) if self.normal_fp else None,
            "recall_by_kind": {kind: (self.kind_found[kind] / total if total else None)
                               for kind, total in sorted(self.kind_total.items())},
            "cases": len(self.case_labels),
            "normal_cases": len(self.normal_fp),
        }
