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

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.dataset_conversion.box_geometry import rasterise_boxes
from nnunet_fracture.dataset_conversion.case import VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import read_boxes_json
from nnunet_fracture.evaluation.box_metrics import BoxStats
from nnunet_fracture.evaluation.detection_metrics import (
    SCORE_DESCRIPTIONS,
    check_threshold,
    detection_metrics,
    none_if_nan,
    vertebra_items,
)
from nnunet_fracture.evaluation.figures import (
    detection_roc_figure,
    overlay_figure,
    pr_curve_figure,
    probability_histogram_figure,
)
from nnunet_fracture.evaluation.segmentation_metrics import Confusion
from nnunet_fracture.evaluation.slice_metrics import AXES, SliceMetrics
from nnunet_fracture.evaluation.threshold_curves import ScoreHistogram
from nnunet_fracture.image_geometry import geometry_mismatch
from nnunet_fracture.inference.probability_files import load_fracture_probability

FRACTURE_LABEL = 1
CONVENTIONS = ("Dice/IoU of empty prediction vs empty ground truth = 1; one empty = 0. Detection ROC-AUC and "
               "average precision are null when only one class (fractured / fracture-free) is present; "
               "sensitivity null without fractured items, specificity null without fracture-free items.")


def _check_same_geometry(reference: sitk.Image, other: sitk.Image, case: str, what: str, path: Path,
                         fix: str = "predict from images with the ground truth's geometry") -> None:
    mismatch = geometry_mismatch(reference, other)
    if mismatch is not None:
        name, theirs, ours = mismatch
        raise ValueError(f"case {case}: {what} {path} has {name} {theirs} but the ground truth has {ours}. "
                         f"Fix: {fix}.")


def threshold_free_columns(histogram: ScoreHistogram) -> dict:
    """Per-case ``metrics.csv`` columns from one case's histogram (NaN where undefined, e.g. no fracture)."""
    best = histogram.best_threshold()
    return {"pr_auc": histogram.average_precision(), "roc_auc": histogram.roc_auc(),
            "best_threshold": best.threshold, "dice_at_best": best.dice, "iou_at_best": best.iou,
            "precision_at_best": best.precision, "recall_at_best": best.recall, "f1_at_best": best.f1}


def _json_ready(values: dict) -> dict:
    return {k: none_if_nan(v) if isinstance(v, float) else v for k, v in values.items()}


class BoxNumbers:
    """Box-number maps (0 outside every box, n inside box n) per case, from ``boxes.json`` or a folder.

    ``source`` is either a raw dataset's ``boxes.json`` (``{case: [{box_id, lo, hi, ...}]}``, ``lo``/``hi``
    inclusive ITK indices i, j, k; every case must be listed, ``[]`` for a fracture-free one) or a folder of
    box-number maps ``<case>.nii.gz`` (``labelsTr`` of a ``convert --weak box`` dataset).
    """

    def __init__(self, source: Path, cases: list[str]):
        self.source = Path(source)
        self.boxes: Optional[dict] = None
        if self.source.is_file():
            table = read_boxes_json(self.source)
            missing = [c for c in cases if c not in table]
            self.boxes = table
        elif self.source.is_dir():
            _refuse_mask_labels(self.source)
            missing = [c for c in cases if not (self.source / f"{c}.nii.gz").is_file()]
        else:
            raise FileNotFoundError(f"boxes {self.source} does not exist. Fix: pass a raw dataset's boxes.json or "
                                    f"its labelsTr folder of box-number maps.")
        if missing:
            where = "are not listed in" if self.boxes is not None else "have no box-number map <case>.nii.gz in"
            raise ValueError(f"{len(missing)} case(s) {where} {self.source}: {', '.join(missing[:10])}. Fix: use "
                             f"the boxes of the dataset the ground truth belongs to (a fracture-free case needs an "
                             f"empty list in boxes.json / an all-zero map).")

    def load(self, case: str, reference: sitk.Image) -> np.ndarray:
        """The case's box-number map in array order (z, y, x), on ``reference``'s grid."""
        if self.boxes is not None:
            boxes = []
            for n, entry in enumerate(self.boxes[case], start=1):
                try:
                    boxes.append(VoxelBox(tuple(int(v) for v in entry["lo"]), tuple(int(v) for v in entry["hi"])))
                except (TypeError, KeyError, ValueError):
                    raise ValueError(f"case {case}: box {n} in {self.source} is {entry!r}; each box needs 'lo' and "
                                     f"'hi', three integer voxel indices (i, j, k) each") from None
            try:
                return rasterise_boxes(boxes, reference.GetSize(), "box")
            except ValueError as e:
                raise ValueError(f"case {case}: {self.source}: {e}. Fix: use the boxes.json written with the "
                                 f"images the ground truth was drawn on.") from None
        path = self.source / f"{case}.nii.gz"
        image = sitk.ReadImage(str(path))
        _check_same_geometry(reference, image, case, "box-number map", path,
                             fix="use the labelsTr folder of the dataset the ground truth belongs to")
        numbers = sitk.GetArrayFromImage(image)
        if numbers.dtype.kind not in "iu" or (numbers.size and numbers.min() < 0):
            raise ValueError(f"case {case}: box-number map {path} must hold integers >= 0 (0 outside every box, "
                             f"n inside box n), got {numbers.dtype} with minimum {numbers.min()}")
        return numbers


def _refuse_mask_labels(folder: Path) -> None:
    """A ``labelsTr`` next to a ``dataset.json`` of a ``--weak mask`` dataset holds masks, not box numbers."""
    dataset_json = folder.parent / "dataset.json"
    try:
        weak = json.loads(dataset_json.read_text()).get("nnunet_fracture", {}).get("weak")
    except (OSError, ValueError, AttributeError):
        return
    if weak == "mask":
        raise ValueError(f"{folder} belongs to a '--weak mask' dataset ({dataset_json}): its labels are ground-truth "
                         f"masks, not box numbers. Fix: pass that dataset's boxes.json ({folder.parent / 'boxes.json'})"
                         f" instead.")


def _read_vertebrae(folder: Path, case: str, reference: sitk.Image) -> np.ndarray:
    path = Path(folder) / f"{case}.nii.gz"
    image = sitk.ReadImage(str(path))
    _check_same_geometry(reference, image, case, "vertebra map", path,
                         fix="use the vertebra maps of the same images (vertebraeTr/ of the converted dataset), or "
                             "resample them onto the ground truth's grid with nearest-neighbour interpolation")
    labels = sitk.GetArrayViewFromImage(image)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"case {case}: vertebra map {path} holds {labels.dtype} values; it must be an integer "
                         f"label map (VerSe numbering)")
    if labels.size and labels.min() < 0:
        raise ValueError(f"case {case}: vertebra map {path} holds negative labels ({labels.min()})")
    # VerSe numbers fit a byte: keep 1 byte per voxel instead of the file's (often 2-byte) type
    return labels.astype(np.uint8) if labels.size and labels.max() <= 255 else labels.copy()


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
                                **_json_ready(self.box_stats.as_dict())}
        return summary


def evaluate_folder(pred: Path, gt: Path, out: Path, images: Optional[Path] = None, boxes: Optional[Path] = None,
                    vertebrae: Optional[Path] = None, threshold: float = 0.5, vertebra_min_voxels: int = 1) -> dict:
    """Evaluate every case of ``gt`` against ``pred`` and write the report to ``out``.

    Args:
        pred: nnU-Net prediction folder.
        gt: folder of ground-truth masks ``<case>.nii.gz`` (label 1 = fracture).
        out: report folder, created if missing.
        images: optional folder with ``<case>_0000.nii.gz`` CTs; when given, an overlay PNG per case.
        boxes: optional ``boxes.json`` or folder of box-number maps ``<case>.nii.gz`` (see :class:`BoxNumbers`);
            adds the box-aware numbers.
        vertebrae: optional folder of vertebra label maps ``<case>.nii.gz`` (VerSe numbering, the ground truth's
            geometry); adds vertebra-level detection and ``vertebrae.csv``.
        threshold: operating point in (0, 1] for the thresholded voxel, slice, detection and box numbers.
        vertebra_min_voxels: ground-truth fracture voxels a vertebra needs to count as fractured (>= 1).

    Returns:
        The summary dictionary also written to ``summary.json``.

    Raises:
        FileNotFoundError: a folder or a case's prediction is missing.
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
    for case, gt_file, npz_present in tqdm(list(zip(cases, gt_files, has_npz)), desc="evaluate", unit="case"):
        gt_image = sitk.ReadImage(str(gt_file))
        pred_file = Path(pred) / f"{case}.nii.gz"
        pred_image = sitk.ReadImage(str(pred_file))
        _check_same_geometry(gt_image, pred_image, case, "prediction", pred_file)
        gt_mask = sitk.GetArrayViewFromImage(gt_image) == FRACTURE_LABEL  # views: no copy of the label maps
        pred_mask = sitk.GetArrayViewFromImage(pred_image) == FRACTURE_LABEL
        del pred_image
        # label maps first: reading a NIfTI briefly needs about twice its size, best before the probabilities
        case_boxes = box_numbers.load(case, gt_image) if box_numbers is not None else None
        case_vertebrae = _read_vertebrae(Path(vertebrae), case, gt_image) if vertebrae is not None else None
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
            _check_same_geometry(gt_image, ct_image, case, "CT", ct_file)
            overlay_figure(sitk.GetArrayFromImage(ct_image), gt_mask, probabilities,
                           tuple(reversed(gt_image.GetSpacing())),
                           f"{case}: Dice {row['dice']:.3f}", Path(out) / "figures" / f"{case}_overlay.png",
                           prediction=pred_mask)
        del gt_image, gt_mask, pred_mask, probabilities  # before the next case is read, not after

    summary = evaluation.summary()
    if box_numbers is not None:
        summary["boxes"]["source"] = str(box_numbers.source)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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
