"""``nnunet-fracture evaluate``: compare an nnU-Net prediction folder with ground-truth masks.

For every ground-truth case ``<case>.nii.gz`` the prediction folder must hold ``<case>.nii.gz`` (the
segmentation nnU-Net writes) and may hold ``<case>.npz`` (``--save_probabilities``). The report folder gets
``metrics.csv`` (one row per case), ``summary.json`` (means and pooled numbers) and, when the CTs are given,
``figures/<case>_overlay.png``. Empty-set conventions are those of
:mod:`nnunet_fracture.evaluation.segmentation_metrics`.

Cases with probabilities also get threshold-free voxel metrics
(:mod:`nnunet_fracture.evaluation.threshold_curves`): per case ``pr_auc``, ``roc_auc``, ``best_threshold`` and
the Dice (= F1), IoU, precision and recall there; pooled over those cases, ``pooled_threshold_free`` in
``summary.json``, ``figures/pr_curve.png`` and ``figures/probability_histogram.png``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.evaluation.figures import overlay_figure, pr_curve_figure, probability_histogram_figure
from nnunet_fracture.evaluation.segmentation_metrics import Confusion
from nnunet_fracture.evaluation.threshold_curves import ScoreHistogram
from nnunet_fracture.image_geometry import geometry_mismatch
from nnunet_fracture.inference.probability_files import load_fracture_probability

FRACTURE_LABEL = 1


def _check_same_geometry(reference: sitk.Image, other: sitk.Image, case: str, what: str, path: Path) -> None:
    mismatch = geometry_mismatch(reference, other)
    if mismatch is not None:
        name, theirs, ours = mismatch
        raise ValueError(f"case {case}: {what} {path} has {name} {theirs} but the ground truth has {ours}. "
                         f"Fix: predict from images with the ground truth's geometry.")


def threshold_free_columns(histogram: ScoreHistogram) -> dict:
    """Per-case ``metrics.csv`` columns from one case's histogram (NaN where undefined, e.g. no fracture)."""
    best = histogram.best_threshold()
    return {"pr_auc": histogram.average_precision(), "roc_auc": histogram.roc_auc(),
            "best_threshold": best.threshold, "dice_at_best": best.dice, "iou_at_best": best.iou,
            "precision_at_best": best.precision, "recall_at_best": best.recall, "f1_at_best": best.f1}


def evaluate_folder(pred: Path, gt: Path, out: Path, images: Optional[Path] = None) -> dict:
    """Evaluate every case of ``gt`` against ``pred`` and write the report to ``out``.

    Args:
        pred: nnU-Net prediction folder.
        gt: folder of ground-truth masks ``<case>.nii.gz`` (label 1 = fracture).
        out: report folder, created if missing.
        images: optional folder with ``<case>_0000.nii.gz`` CTs; when given, an overlay PNG per case.

    Returns:
        The summary dictionary also written to ``summary.json``.

    Raises:
        FileNotFoundError: a folder or a case's prediction is missing.
        ValueError: geometry mismatch or probabilities outside [0, 1].
    """
    for folder, what in ((pred, "prediction folder"), (gt, "ground-truth folder")):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{what} {folder} does not exist")
    gt_files = sorted(Path(gt).glob("*.nii.gz"))
    if not gt_files:
        raise FileNotFoundError(f"no ground-truth masks (*.nii.gz) in {gt}")
    cases = [f.name[: -len(".nii.gz")] for f in gt_files]
    missing = [c for c in cases if not (Path(pred) / f"{c}.nii.gz").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} case(s) have no prediction in {pred}: {', '.join(missing[:10])}. "
                                f"Fix: predict all ground-truth cases, or evaluate against a ground-truth folder "
                                f"holding only the predicted cases.")
    rows, pooled, pooled_probability = [], Confusion(0, 0, 0), Confusion(0, 0, 0)
    pooled_histogram = ScoreHistogram()
    for case, gt_file in tqdm(list(zip(cases, gt_files)), desc="evaluate", unit="case"):
        gt_image = sitk.ReadImage(str(gt_file))
        pred_file = Path(pred) / f"{case}.nii.gz"
        pred_image = sitk.ReadImage(str(pred_file))
        _check_same_geometry(gt_image, pred_image, case, "prediction", pred_file)
        gt_mask = sitk.GetArrayFromImage(gt_image) == FRACTURE_LABEL
        pred_mask = sitk.GetArrayFromImage(pred_image) == FRACTURE_LABEL
        confusion = Confusion.from_masks(pred_mask, gt_mask)
        pooled = pooled + confusion
        row = {"case": case, "gt_voxels": int(gt_mask.sum()), "pred_voxels": int(pred_mask.sum()),
               **confusion.as_dict()}
        probabilities = None
        npz = Path(pred) / f"{case}.npz"
        if npz.is_file():
            probabilities = load_fracture_probability(npz, case, gt_mask.shape)
            row["max_probability"] = float(probabilities.max())
            thresholded = Confusion.from_masks(probabilities >= 0.5, gt_mask)
            pooled_probability = pooled_probability + thresholded
            row["dice_at_0.5"] = thresholded.dice
            histogram = ScoreHistogram().add(probabilities, gt_mask)
            pooled_histogram = pooled_histogram + histogram
            row.update(threshold_free_columns(histogram))
        if images is not None:
            ct_file = Path(images) / f"{case}_0000.nii.gz"
            if not ct_file.is_file():
                raise FileNotFoundError(f"case {case}: no CT {ct_file} for the overlay figure")
            ct_image = sitk.ReadImage(str(ct_file))
            _check_same_geometry(gt_image, ct_image, case, "CT", ct_file)
            overlay_figure(sitk.GetArrayFromImage(ct_image), gt_mask, probabilities,
                           tuple(reversed(gt_image.GetSpacing())),
                           f"{case}: Dice {confusion.dice:.3f}", Path(out) / "figures" / f"{case}_overlay.png")
        rows.append(row)

    table = pd.DataFrame(rows)
    fractured = table[table["gt_voxels"] > 0]
    summary = {
        "n_cases": len(table),
        "n_fractured_cases": len(fractured),
        "mean_dice": float(table["dice"].mean()),
        "mean_dice_fractured_cases": float(fractured["dice"].mean()) if len(fractured) else None,
        "pooled": pooled.as_dict(),
        "false_positive_cases": int(((table["gt_voxels"] == 0) & (table["pred_voxels"] > 0)).sum()),
        "conventions": "Dice/IoU of empty prediction vs empty ground truth = 1; one empty = 0",
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if "max_probability" in table:
        summary["pooled_at_probability_0.5"] = pooled_probability.as_dict()
        summary["pooled_threshold_free"] = pooled_histogram.summary()
        n_prob = int(table["max_probability"].notna().sum())
        pr_curve_figure(pooled_histogram, f"pooled over {n_prob} case(s) with probabilities",
                        out / "figures" / "pr_curve.png")
        probability_histogram_figure(pooled_histogram, f"voxel probabilities, {n_prob} case(s)",
                                     out / "figures" / "probability_histogram.png")
    table.to_csv(out / "metrics.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
