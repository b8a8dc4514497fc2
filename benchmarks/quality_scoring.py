"""Scoring of the quality bench's arms on the held-out test dataset (see ``benchmarks/quality.py``).

Trained arms are read from an ``nnUNetv2_predict --save_probabilities`` folder; the two references are computed
from the CT and the boxes: ``box_fill`` (the boxes themselves) and ``hu_threshold`` (inside each box, HU >= t,
with t the threshold of best pooled in-box Dice on the training cases). With ``inside_vertebra`` a reference keeps
only the part of each box that ``pseudo-masks --inside-vertebra`` keeps (:func:`vertebra_region`): the floor of a
method that uses the vertebra maps too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from nnunet_fracture.evaluation.bench_scores import BenchScore, KindBox, boxes_mask

HU_STEP = 10  # candidate thresholds of the hu_threshold reference: every 10 HU
HU_SOFTNESS = 100.0  # the reference's score per voxel: sigmoid((HU - t) / 100) inside the boxes, 0 outside


def _read(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _kinds(phantom_folder: Path) -> dict[str, list[str]]:
    """Fracture kind of every box (``phantom.json`` lists fractures in box order), by case."""
    phantom = json.loads((phantom_folder / "phantom.json").read_text(encoding="utf-8"))
    return {case["case_id"]: [f["type"] for f in case["fractures"]] for case in phantom["cases"]}


def cases(raw: Path, phantom: Path) -> Iterator[tuple[str, np.ndarray, list[KindBox]]]:
    """``(case, ground truth, boxes with their kinds)`` of every case of the dataset converted from ``phantom``."""
    from nnunet_fracture.dataset_conversion.raw_dataset import read_boxes_json

    boxes, kinds = read_boxes_json(raw / "boxes.json"), _kinds(phantom)
    for gt_file in sorted((raw / "groundTruthTr").glob("*.nii.gz")):
        case = gt_file.name[: -len(".nii.gz")]
        if len(kinds[case]) != len(boxes[case]):
            raise ValueError(f"case {case}: {len(boxes[case])} boxes in {raw / 'boxes.json'} but "
                             f"{len(kinds[case])} fractures in the phantom description")
        yield case, _read(gt_file) > 0, [KindBox(tuple(b["lo"][::-1]), tuple(b["hi"][::-1]), kind,
                                                 str(b.get("label") or ""))
                                         for b, kind in zip(boxes[case], kinds[case])]


def score_predictions(predictions: Path, test_raw: Path, test_phantom: Path, pseudo_rule: Optional[str],
                      pseudo_out: Path, refine: Optional[str] = None, options=None,
                      masks: Optional[Path] = None) -> dict:
    """An arm's numbers from its test predictions (and its pseudo-masks inside the boxes, for weak arms, drawn with
    the :class:`~nnunet_fracture.inference.label_options.LabelOptions` ``options``; ``None``: the defaults). The
    segmentations are read from ``masks`` when given (e.g. post-processed), the probabilities always from
    ``predictions``, whose fingerprint the result records."""
    from nnunet_fracture.inference.label_options import LabelOptions
    from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks
    from nnunet_fracture.io.probability_files import load_fracture_probability

    if pseudo_rule is not None:
        write_pseudo_masks([predictions], test_raw, pseudo_out, rule=pseudo_rule, overwrite=True,
                           refine=refine or "none",
                           options=options or LabelOptions())
    score = BenchScore()
    for case, gt, boxes in cases(test_raw, test_phantom):
        probability = load_fracture_probability(predictions / f"{case}.npz", case, gt.shape)
        mask = _read((masks or predictions) / f"{case}.nii.gz") > 0
        pseudo = None if pseudo_rule is None else _read(pseudo_out / "masks" / f"{case}.nii.gz") > 0
        score.add(gt, mask, probability, boxes, in_box_mask=pseudo)
    return {**score.as_dict(), "predictions_id": predictions_id(predictions)}


def clean_masks(predictions: Path, out: Path, training_dataset: Path, fraction: float) -> dict:
    """``nnunet-fracture postprocess predictions --dataset training_dataset --fraction fraction --out out``; what
    the result records of it (``postprocessing``: the threshold and the components and voxels removed)."""
    from nnunet_fracture.inference.small_components import clean_by_training_labels, removal_totals

    record = clean_by_training_labels(predictions, out, training_dataset, fraction, overwrite=True)
    components, voxels = removal_totals(record)
    return {"postprocessing": {**{k: v for k, v in record.items() if k not in ("source", "dataset", "cases")},
                               "components_removed": components, "voxels_removed": voxels}}


def predictions_id(predictions: Path) -> str:
    """A short fingerprint of a predictions folder (its files' names and sizes): two results that score the same
    model's predictions carry the same id, and a model trained again (same recipe, another run) gets another."""
    import hashlib

    files = sorted((f.name, f.stat().st_size) for f in predictions.iterdir() if f.is_file())
    return hashlib.sha1(json.dumps(files).encode()).hexdigest()[:10]


def vertebra_region(raw: Path, case: str, boxes: list[KindBox], shell_mm: float) -> np.ndarray:
    """The voxels of ``case``'s ``boxes`` that ``pseudo-masks --inside-vertebra shell_mm`` keeps: in each box, the
    interior of the vertebra it names (the dataset's ``vertebraeTr`` map)."""
    import SimpleITK as sitk

    from nnunet_fracture.inference.vertebra_interior import CaseVertebrae

    image = sitk.ReadImage(str(raw / "vertebraeTr" / f"{case}.nii.gz"))
    vertebrae = CaseVertebrae(sitk.GetArrayFromImage(image), image.GetSpacing()[::-1], shell_mm)
    region = np.zeros(vertebrae.vertebrae.shape, dtype=bool)
    for box in boxes:
        region[box.slices()] |= vertebrae.interior(box.label)[box.slices()]
    return region


def _region(raw: Path, case: str, gt: np.ndarray, boxes: list[KindBox], inside_vertebra: Optional[float]):
    """The boxes of a case, or their :func:`vertebra_region` with ``inside_vertebra``."""
    if inside_vertebra is None or not boxes:
        return boxes_mask(gt.shape, boxes)
    return vertebra_region(raw, case, boxes, inside_vertebra)


def best_hu_threshold(train_raw: Path, train_phantom: Path, inside_vertebra: Optional[float] = None) -> float:
    """The HU threshold t of best pooled Dice of ``HU >= t`` inside the boxes of the training cases (of their
    :func:`vertebra_region` with ``inside_vertebra``)."""
    values, truth = [], []
    for case, gt, boxes in cases(train_raw, train_phantom):
        inside = _region(train_raw, case, gt, boxes, inside_vertebra)
        values.append(_read(train_raw / "imagesTr" / f"{case}_0000.nii.gz")[inside])
        truth.append(gt[inside])
    hu, positive = np.concatenate(values), np.concatenate(truth)
    thresholds = np.arange(np.floor(hu.min() / HU_STEP) * HU_STEP, hu.max() + HU_STEP, HU_STEP)
    n_true = positive.sum()
    best, best_dice = float(thresholds[0]), -1.0
    for t in thresholds:
        called = hu >= t
        tp = np.count_nonzero(called & positive)
        dice = 2 * tp / (np.count_nonzero(called) + n_true) if n_true else 0.0
        if dice > best_dice:
            best, best_dice = float(t), dice
    return best


def score_reference(kind: str, test_raw: Path, test_phantom: Path, train_raw: Path, train_phantom: Path,
                    inside_vertebra: Optional[float] = None) -> dict:
    """``box_fill`` or ``hu_threshold`` on the test cases (the threshold chosen on ``train_raw``), in the whole
    boxes or, with ``inside_vertebra``, in their :func:`vertebra_region`."""
    if kind not in ("box_fill", "hu_threshold"):
        raise ValueError(f"unknown reference {kind!r}; expected box_fill or hu_threshold")
    threshold = best_hu_threshold(train_raw, train_phantom, inside_vertebra) if kind == "hu_threshold" else None
    score = BenchScore()
    for case, gt, boxes in cases(test_raw, test_phantom):
        inside = _region(test_raw, case, gt, boxes, inside_vertebra)
        if threshold is None:
            mask, probability = inside, inside.astype(np.float32)
        else:
            hu = _read(test_raw / "imagesTr" / f"{case}_0000.nii.gz").astype(np.float32)
            mask = inside & (hu >= threshold)
            probability = np.where(inside, 1 / (1 + np.exp(-(hu - threshold) / HU_SOFTNESS)), 0).astype(np.float32)
        score.add(gt, mask, probability, boxes)
    out = score.as_dict()
    if threshold is not None:
        out["hu_threshold"] = threshold
    return out
