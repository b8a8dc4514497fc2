"""``StreamingEvaluation``: every number ``evaluate`` reports, accumulated one case at a time (see
:mod:`nnunet_fracture.evaluation.report` for the levels and the memory they take)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from nnunet_fracture.evaluation.box_metrics import BoxStats
from nnunet_fracture.evaluation.detection_metrics import (
    SCORE_DESCRIPTIONS,
    check_threshold,
    detection_metrics,
    none_if_nan,
    vertebra_items,
)
from nnunet_fracture.evaluation.segmentation_metrics import Confusion
from nnunet_fracture.evaluation.slice_metrics import AXES, SliceMetrics
from nnunet_fracture.evaluation.threshold_curves import ScoreHistogram

FRACTURE_LABEL = 1
CONVENTIONS = ("Dice/IoU of empty prediction vs empty ground truth = 1; one empty = 0. Detection ROC-AUC and "
               "average precision are null when only one class (fractured / fracture-free) is present; "
               "sensitivity null without fractured items, specificity null without fracture-free items.")


def threshold_free_columns(histogram: ScoreHistogram) -> dict:
    """Per-case ``metrics.csv`` columns from one case's histogram (NaN where undefined, e.g. no fracture)."""
    best = histogram.best_threshold()
    return {"pr_auc": histogram.average_precision(), "roc_auc": histogram.roc_auc(),
            "best_threshold": best.threshold, "dice_at_best": best.dice, "iou_at_best": best.iou,
            "precision_at_best": best.precision, "recall_at_best": best.recall, "f1_at_best": best.f1}


def json_ready(values: dict) -> dict:
    """NaN floats as None (JSON has no NaN)."""
    return {k: none_if_nan(v) if isinstance(v, float) else v for k, v in values.items()}


class StreamingEvaluation:
    """Every number :func:`evaluate_folder` reports, accumulated one case (arrays) at a time.

    Keeps per case one ``metrics.csv`` row, its per-slice counts and vertebra rows; pooled voxel numbers are
    fixed-size sums (:class:`Confusion`, :class:`ScoreHistogram`, :class:`BoxStats`). No voxel is kept.

    Args:
        threshold: the operating point in (0, 1].
        score_source: ``"probability"`` (every case will have probabilities) or ``"mask"``; the detection
            and box scores of every case.
        vertebra_min_voxels: ground-truth fracture voxels a vertebra needs to count as fractured.
    """

    def __init__(self, threshold: float = 0.5, score_source: str = "probability", vertebra_min_voxels: int = 1):
        if score_source not in SCORE_DESCRIPTIONS:
            raise ValueError(f"score_source must be one of {', '.join(SCORE_DESCRIPTIONS)}, got {score_source!r}")
        if isinstance(vertebra_min_voxels, bool) or int(vertebra_min_voxels) != vertebra_min_voxels \
                or vertebra_min_voxels < 1:
            raise ValueError(f"the minimum number of fracture voxels for a fractured vertebra must be a whole "
                             f"number >= 1, got {vertebra_min_voxels!r}")
        self.threshold = check_threshold(threshold)
        self.score_source = score_source
        self.vertebra_min_voxels = int(vertebra_min_voxels)
        self.rows: list[dict] = []
        self.vertebra_tables: list[pd.DataFrame] = []
        self.pooled = Confusion(0, 0, 0)
        self.pooled_at_threshold = Confusion(0, 0, 0)
        self.histogram = ScoreHistogram()
        self.slices = SliceMetrics(self.threshold)
        self.box_stats: Optional[BoxStats] = None

    @property
    def score_dtype(self) -> type:
        """Detection scores are compared with the threshold in float32 when they are (float32) probabilities,
        like voxels in :class:`ScoreHistogram`; 0/1 mask scores are exact either way."""
        return np.float32 if self.score_source == "probability" else np.float64

    @property
    def at(self) -> str:
        """Suffix of the columns at the threshold, e.g. ``at_0.5``."""
        return f"at_{self.threshold:g}"

    def add_case(self, case: str, gt_mask: np.ndarray, pred_mask: np.ndarray,
                 probabilities: Optional[np.ndarray] = None, box_numbers: Optional[np.ndarray] = None,
                 vertebrae: Optional[np.ndarray] = None) -> dict:
        """Evaluate one case (boolean masks, probabilities in [0, 1], integer maps; one shape) and return its
        ``metrics.csv`` row. Probabilities are evaluated as float32, what nnU-Net writes (other dtypes are
        converted)."""
        if probabilities is None and self.score_source == "probability":
            raise ValueError(f"case {case}: no probabilities, but the scores were set to come from probabilities")
        if probabilities is not None:
            probabilities = np.asarray(probabilities, dtype=np.float32)
        confusion = Confusion.from_masks(pred_mask, gt_mask)
        self.pooled = self.pooled + confusion
        row = {"case": case, "gt_voxels": int(np.count_nonzero(gt_mask)),
               "pred_voxels": int(np.count_nonzero(pred_mask)), **confusion.as_dict()}
        if probabilities is not None:
            row["max_probability"] = float(probabilities.max()) if probabilities.size else 0.0
            thresholded = Confusion.from_masks(probabilities >= self.threshold, gt_mask)
            self.pooled_at_threshold = self.pooled_at_threshold + thresholded
            for name in ("dice", "iou", "precision", "recall"):
                row[f"{name}_{self.at}"] = getattr(thresholded, name)
            case_histogram = ScoreHistogram().add(probabilities, gt_mask)
            self.histogram = self.histogram + case_histogram
            row.update(threshold_free_columns(case_histogram))
        scores = probabilities if self.score_source == "probability" else pred_mask
        row["detection_score"] = float(scores.max()) if scores.size else 0.0
        row.update(self.slices.add(pred_mask, gt_mask, scores))
        if vertebrae is not None:
            table = vertebra_items(vertebrae, gt_mask, scores, self.vertebra_min_voxels)
            table.insert(0, "case", case)
            self.vertebra_tables.append(table)
            row.update(vertebrae=len(table), fractured_vertebrae=int(table["label"].sum()),
                       fracture_voxels_outside_vertebrae=row["gt_voxels"] - int(table["fracture_voxels"].sum()))
        if box_numbers is not None:
            # BoxStats compares in float64; the float32-rounded threshold gives the float32 comparison used
            # everywhere else for float32 probabilities
            rounded = float(np.float32(self.threshold)) if scores.dtype == np.float32 else self.threshold
            stats = BoxStats.from_arrays(scores, box_numbers, rounded if rounded > 0 else self.threshold)
            self.box_stats = stats if self.box_stats is None else self.box_stats + stats
            row.update(boxes=stats.boxes_total, boxes_hit=stats.boxes_hit,
                       mass_inside_fraction=stats.mass_inside_fraction, box_hit_rate=stats.hit_rate,
                       outside_fp_rate=stats.outside_fp_rate)
        self.rows.append(row)
        return row

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def vertebra_table(self) -> Optional[pd.DataFrame]:
        if not self.vertebra_tables:
            return None
        return pd.concat(self.vertebra_tables, ignore_index=True)

    def detection_items(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(scores, labels) per detection level: ``case``, ``vertebra`` (with vertebra maps) and each axis."""
        table = self.table()
        dtype = self.score_dtype
        items = {"case": (table["detection_score"].to_numpy(dtype), (table["gt_voxels"] > 0).to_numpy())}
        vertebrae = self.vertebra_table()
        if vertebrae is not None:
            items["vertebra"] = (vertebrae["score"].to_numpy(dtype), vertebrae["label"].to_numpy(bool))
        for name in AXES:
            items[f"{name} slice"] = self.slices.scores_and_labels(name)
        return items

    def summary(self) -> dict:
        table = self.table()
        fractured = table[table["gt_voxels"] > 0]
        summary = {
            "n_cases": len(table),
            "n_fractured_cases": len(fractured),
            "mean_dice": float(table["dice"].mean()),
            "mean_dice_fractured_cases": float(fractured["dice"].mean()) if len(fractured) else None,
            "pooled": self.pooled.as_dict(),
            "false_positive_cases": int(((table["gt_voxels"] == 0) & (table["pred_voxels"] > 0)).sum()),
            "conventions": CONVENTIONS,
            "threshold": self.threshold,
        }
        if "max_probability" in table:
            summary[f"pooled_at_probability_{self.threshold:g}"] = self.pooled_at_threshold.as_dict()
            summary["pooled_threshold_free"] = self.histogram.summary()
        summary["slices"] = self.slices.summary()
        items = self.detection_items()
        detection = {"score": self.score_source, "score_definition": SCORE_DESCRIPTIONS[self.score_source],
                     "case": detection_metrics(*items["case"], self.threshold).as_dict()}
        if "vertebra" in items:
            detection["vertebra"] = {
                **detection_metrics(*items["vertebra"], self.threshold).as_dict(),
                "min_fracture_voxels": self.vertebra_min_voxels,
                "fracture_voxels_outside_vertebrae": int(table["fracture_voxels_outside_vertebrae"].sum()),
            }
        summary["detection"] = detection
        if self.box_stats is not None:
            summary["boxes"] = {"score": self.score_source, "threshold": self.threshold,
                                **json_ready(self.box_stats.as_dict())}
        return summary
