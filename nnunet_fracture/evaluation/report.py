"""``nnunet-fracture evaluate``: compare an nnU-Net prediction folder with ground-truth masks.

For every ground-truth case ``<case>.nii.gz`` the prediction folder must hold ``<case>.nii.gz`` (the
segmentation nnU-Net writes) and may hold ``<case>.npz`` (``--save_probabilities``). The report folder gets
``metrics.csv`` (one row per case), ``summary.json`` (means and pooled numbers), figures under ``figures/``
and, with vertebra maps, ``vertebrae.csv``. Empty-set conventions are those of
:mod:`nnunet_fracture.evaluation.segmentation_metrics`. ``threshold`` (default 0.5, in (0, 1]) is the one
operating point: a voxel, slice, case or vertebra is called fracture when its probability (score) is
``>= threshold``.

Levels, each streamed case by case (per case only counts and a few hundred per-slice numbers are kept):

- **3D voxels**: TP/FP/FN, Dice, IoU, precision, recall of the predicted mask and of ``p >= threshold``;
  threshold-free (cases with probabilities, :mod:`nnunet_fracture.evaluation.threshold_curves`): per case
  ``pr_auc``, ``roc_auc``, ``best_threshold`` and the Dice (= F1), IoU, precision and recall there; pooled,
  ``pooled_threshold_free``, ``figures/pr_curve.png`` and ``figures/probability_histogram.png``.
- **Slices (2.5D)** along each axis (:mod:`nnunet_fracture.evaluation.slice_metrics`): ``slices`` in
  ``summary.json``, ``slice_dice_<axis>`` per case.
- **Detection** (:mod:`nnunet_fracture.evaluation.detection_metrics`): case-level ROC-AUC / average precision
  (item = case, score = its maximum probability, label = any ground-truth fracture voxel) and, with
  ``vertebrae``, vertebra-level (item = vertebra label of a case); ``detection`` in ``summary.json``,
  ``vertebrae.csv``, ``figures/detection_roc.png``. Scores are maximum probabilities when every case has a
  ``.npz``, else "predicted mask non-empty" (0/1) for every case.
- **Boxes** (``boxes``, :mod:`nnunet_fracture.evaluation.box_metrics`): mass inside boxes, box hit rate and
  outside false-positive rate per case and pooled (``boxes`` in ``summary.json``), from the probabilities (or
  the predicted mask as 0/1, with the same rule as detection scores).

Comparisons with the threshold are made in the probabilities' precision (float32, as nnU-Net writes them),
everywhere, like the voxel histogram: a stored float32 0.9 counts as ``>= 0.9``.

Memory: one case is held at a time (its probability, masks and label maps), and released before the next is
read. ``benchmarks/evaluate_memory.py`` measured 20 cases of 512 x 512 x 300 with boxes and vertebrae: a peak
of about 2.2 times one case's float32 probability + mask, flat from the first case to the last, about a
ninth of what holding every voxel would take.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.visualization.evaluation_figures import (
    detection_roc_figure,
    overlay_figure,
    pr_curve_figure,
    probability_histogram_figure,
)
from nnunet_fracture.evaluation.report_inputs import BoxNumbers, check_same_geometry, read_vertebrae
from nnunet_fracture.evaluation.report_streaming import FRACTURE_LABEL, StreamingEvaluation
from nnunet_fracture.io.probability_files import load_fracture_probability
from nnunet_fracture.io.output_folders import staged_folder


def evaluate_folder(pred: Path, gt: Path, out: Path, images: Optional[Path] = None, boxes: Optional[Path] = None,
                    vertebrae: Optional[Path] = None, threshold: float = 0.5, vertebra_min_voxels: int = 1,
                    allow_missing: bool = False, overwrite: bool = False) -> dict:
    """Evaluate every case of ``gt`` against ``pred`` and write the report to ``out``.

    The report is written whole or not at all: into a hidden staging folder next to ``out``, moved into place when
    every case is done. An existing non-empty ``out`` is refused unless ``overwrite``, and then replaced, so no
    figure or table of an earlier report survives into the new one.

    Args:
        pred: nnU-Net prediction folder.
        gt: folder of ground-truth masks ``<case>.nii.gz`` (label 1 = fracture).
        out: report folder, created (replaced with ``overwrite``).
        images: optional folder with ``<case>_0000.nii.gz`` CTs; when given, an overlay PNG per case.
        boxes: optional ``boxes.json`` or folder of box-number maps ``<case>.nii.gz`` (see :class:`BoxNumbers`);
            adds the box-aware numbers.
        vertebrae: optional folder of vertebra label maps ``<case>.nii.gz`` (VerSe numbering, the ground truth's
            geometry); adds vertebra-level detection and ``vertebrae.csv``.
        threshold: operating point in (0, 1] for the thresholded voxel, slice, detection and box numbers.
        vertebra_min_voxels: ground-truth fracture voxels a vertebra needs to count as fractured (>= 1).
        allow_missing: evaluate although predicted cases have no ground truth; they are listed in
            ``summary.json`` (``predictions_without_ground_truth``) and printed. Otherwise that is an error, like a
            ground-truth case without a prediction (a dropped fracture-free case would change detection numbers).
        overwrite: replace an existing non-empty ``out``.

    Returns:
        The summary dictionary also written to ``summary.json``.

    Raises:
        FileNotFoundError: a folder or a case's prediction is missing, or a predicted case has no ground truth (and
            not ``allow_missing``).
        FileExistsError: ``out`` is a file, or a non-empty folder and not ``overwrite``.
        ValueError: geometry mismatch, probabilities outside [0, 1], a case missing from ``boxes`` or
            ``vertebrae``, invalid boxes or label maps, or a bad ``threshold`` / ``vertebra_min_voxels``.
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
    unmatched = sorted(set(p.name[: -len(".nii.gz")] for p in Path(pred).glob("*.nii.gz")) - set(cases))
    if unmatched and not allow_missing:
        raise FileNotFoundError(f"{len(unmatched)} predicted case(s) in {pred} have no ground truth in {gt}: "
                                f"{', '.join(unmatched[:10])}. Fix: add their masks to {gt}, or pass --allow-missing "
                                f"to evaluate without them (they are then listed in summary.json).")
    if unmatched:
        print(f"evaluate: {len(unmatched)} predicted case(s) without ground truth left out: "
              f"{', '.join(unmatched[:10])}{' ...' if len(unmatched) > 10 else ''}")
    has_npz = [(Path(pred) / f"{c}.npz").is_file() for c in cases]
    evaluation = StreamingEvaluation(threshold, "probability" if all(has_npz) else "mask", vertebra_min_voxels)
    box_numbers = BoxNumbers(boxes, cases) if boxes is not None else None
    if vertebrae is not None:
        if not Path(vertebrae).is_dir():
            raise FileNotFoundError(f"vertebra folder {vertebrae} does not exist")
        missing = [c for c in cases if not (Path(vertebrae) / f"{c}.nii.gz").is_file()]
        if missing:
            raise ValueError(f"{len(missing)} case(s) have no vertebra map <case>.nii.gz in {vertebrae}: "
                             f"{', '.join(missing[:10])}. Fix: give a vertebra map for every ground-truth case "
                             f"(vertebraeTr/ of the converted dataset), or leave out --vertebrae.")
    with staged_folder(Path(out), overwrite, inputs=(pred, gt, images, boxes, vertebrae)) as stage:
        return _write_report(pred, cases, gt_files, has_npz, evaluation, box_numbers, stage, images, vertebrae,
                             extra={"predictions_without_ground_truth": unmatched} if allow_missing else {})


def _write_report(pred: Path, cases: list[str], gt_files: list[Path], has_npz: list[bool],
                  evaluation: StreamingEvaluation, box_numbers: Optional[BoxNumbers], out: Path,
                  images: Optional[Path], vertebrae: Optional[Path], extra: dict) -> dict:
    """Stream every case into ``evaluation`` and write the report's files into ``out`` (the staging folder); the
    summary, with ``extra``'s keys added."""
    for case, gt_file, npz_present in tqdm(list(zip(cases, gt_files, has_npz)), desc="evaluate", unit="case"):
        gt_image = sitk.ReadImage(str(gt_file))
        pred_file = Path(pred) / f"{case}.nii.gz"
        pred_image = sitk.ReadImage(str(pred_file))
        check_same_geometry(gt_image, pred_image, case, "prediction", pred_file)
        gt_mask = sitk.GetArrayViewFromImage(gt_image) == FRACTURE_LABEL  # views: no copy of the label maps
        pred_mask = sitk.GetArrayViewFromImage(pred_image) == FRACTURE_LABEL
        del pred_image
        # label maps first: reading a NIfTI briefly needs about twice its size, best before the probabilities
        case_boxes = box_numbers.load(case, gt_image) if box_numbers is not None else None
        case_vertebrae = read_vertebrae(Path(vertebrae), case, gt_image) if vertebrae is not None else None
        probabilities = None
        if npz_present:
            probabilities = load_fracture_probability(Path(pred) / f"{case}.npz", case, gt_mask.shape)
        row = evaluation.add_case(case, gt_mask, pred_mask, probabilities, box_numbers=case_boxes,
                                  vertebrae=case_vertebrae)
        del case_boxes, case_vertebrae
        if images is not None:
            ct_file = Path(images) / f"{case}_0000.nii.gz"
            if not ct_file.is_file():
                raise FileNotFoundError(f"case {case}: no CT {ct_file} for the overlay figure")
            ct_image = sitk.ReadImage(str(ct_file))
            check_same_geometry(gt_image, ct_image, case, "CT", ct_file)
            overlay_figure(sitk.GetArrayFromImage(ct_image), gt_mask, probabilities,
                           tuple(reversed(gt_image.GetSpacing())),
                           f"{case}: Dice {row['dice']:.3f}", Path(out) / "figures" / f"{case}_overlay.png",
                           prediction=pred_mask)
        del gt_image, gt_mask, pred_mask, probabilities  # before the next case is read, not after

    summary = {**evaluation.summary(), **extra}
    if box_numbers is not None:
        summary["boxes"]["source"] = str(box_numbers.source)
    if "pooled_threshold_free" in summary:
        n_prob = int(sum(has_npz))
        pr_curve_figure(evaluation.histogram, f"pooled over {n_prob} case(s) with probabilities",
                        out / "figures" / "pr_curve.png")
        probability_histogram_figure(evaluation.histogram, f"voxel probabilities, {n_prob} case(s)",
                                     out / "figures" / "probability_histogram.png")
    detection_roc_figure(evaluation.detection_items(), f"detection ROC (score: {evaluation.score_source})",
                         out / "figures" / "detection_roc.png")
    evaluation.table().to_csv(out / "metrics.csv", index=False)
    vertebra_table = evaluation.vertebra_table()
    if vertebra_table is not None:
        vertebra_table.to_csv(out / "vertebrae.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
