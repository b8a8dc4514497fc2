"""``nnunet-fracture pseudo-masks``: box-constrained pseudo-masks and uncertainty maps from nnU-Net predictions.

Input: one or more ``nnUNetv2_predict --save_probabilities`` output folders (one per fold, or one; fusion and
uncertainty in :mod:`~nnunet_fracture.inference.prediction_folders`) and the raw dataset they were predicted from
(:mod:`~nnunet_fracture.dataset_conversion.source_dataset`; its ``boxes.json`` and ``imagesTr``). The cases processed
are those the folders hold - the whole dataset or a subset, e.g. held-out cases - and every folder must hold the same
ones; a case that ``boxes.json`` does not list is an error.

**Rules** (``fixed``, ``otsu``, ``fraction``; :mod:`~nnunet_fracture.inference.selection_rules`) turn the fused
fracture probability P inside each box into that box's mask, each box on its own.

**Refinement** (``refine="random_walker"``, :mod:`~nnunet_fracture.inference.refinement`): each box's mask is
then re-drawn on the CT by a random walker seeded with the background around the box and the confident voxels
inside it; a refined mask whose share of the box breaks the size bounds is reset to the rule's mask. The
``refinement`` column of ``pseudo_masks.csv`` says what happened to each box.

**Inside the vertebra** (``options=LabelOptions(inside_vertebra=SHELL_MM)``,
:mod:`~nnunet_fracture.inference.vertebra_interior`): each box's mask keeps only voxels of the vertebra the box
names, more than ``SHELL_MM`` inside its surface (the dataset's ``vertebraeTr`` map); the ``outside_vertebra``
column counts the voxels this removed.

**Dark lesions** (``LabelOptions(dark_lesions=HU)``, with ``inside_vertebra``;
:mod:`~nnunet_fracture.inference.lesion_polarity`): a box whose weak model prefers the darker half of its bone (a
cleft, not a sclerotic band) gets as its mask the bone more than ``HU`` below the median HU of the box's bone,
instead of the rule's (unrefined) mask; the ``polarity`` column says which boxes, and their ``refinement`` is
``dark_lesion``.

**Boxes and overlaps.** Each box's rule sees exactly that box's own voxels, so a threshold is never distorted by
a neighbouring box. The case mask is the union of the per-box selections: a voxel inside several boxes is
fracture if any of them keeps it. Every voxel outside all boxes is 0. A box where nothing is kept is not filled
in: it is flagged ``empty`` in ``pseudo_masks.csv``, which tells the human corrector where the model missed.

**Outputs** (in ``out``; built in a hidden ``.<out>.partial-*`` folder next to it and renamed into place when
complete, so an error leaves nothing behind)::

    masks/<case>.nii.gz           uint8 0/1 pseudo-mask on the case image's grid
    probabilities/<case>.nii.gz   float32 fused fracture probability
    uncertainty/<case>.nii.gz     float32 uncertainty (fold std, or binary entropy in bits for one folder)
    pseudo_masks.csv              one row per box (see :data:`CSV_COLUMNS`)
    pseudo_masks.json             provenance: inputs, model info, rule, parameters, thresholds, uncertainty kind

Each box's ``mask_confidence`` is the mean P over its final mask (BoxTeacher's mask-aware confidence; empty
boxes have none): the table's lowest values are the masks to check first.

With ``export_dataset`` the masks also become the labels of a new nnU-Net raw dataset
(:mod:`~nnunet_fracture.inference.dataset_export`). With an ``ignore_band (low, high)`` too, the box voxels left out
of a mask whose P lies in ``[low, high)`` are labelled nnU-Net's ``ignore`` (2) there: the strong model is then
neither taught they are fracture nor that they are not (a self-training round's uncertain voxels). With an
``ignore_ring`` of ``r`` voxels the masks' outer ``r`` voxels are ``ignore`` as well, and with ``ignore_unsure``
the least confident share of all boxes is ``ignore`` whole, and with ``ignore_faint`` the boxes whose mask does
not stand out from the rest of the box in HU (:mod:`~nnunet_fracture.inference.round_labels`).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.inference.dataset_export import DatasetExport
from nnunet_fracture.inference.label_options import LabelOptions
from nnunet_fracture.inference.lesion_polarity import box_polarity, check_below_hu, dark_lesion_mask
from nnunet_fracture.inference.refinement import Refinement, refine_box
from nnunet_fracture.inference.round_labels import (dark_boxes, faint_boxes, ignored_labels, mask_contrast_hu,
                                                    unsure_boxes)
from nnunet_fracture.inference.selection_rules import Rule, select_in_box
from nnunet_fracture.inference.vertebra_interior import CaseVertebrae, check_vertebra_maps, read_vertebra_map
from nnunet_fracture.inference.prediction_folders import (UNCERTAINTY_KINDS, PredictionFolder, select_cases,
                                                          fused_probability, model_info, open_prediction_folders,
                                                          read_grid)
from nnunet_fracture.dataset_conversion.source_dataset import BoxEntry, SourceDataset
from nnunet_fracture.io.output_folders import check_output_folder, check_output_not_an_input, swap_in
from nnunet_fracture.io.reference_grid import array_to_image
from nnunet_fracture.io.verified_writes import write_image

CSV_COLUMNS = ("case", "box_id", "label", "rule", "threshold", "comparison", "voxels_in_box", "voxels_kept",
               "max_probability", "mean_probability", "mask_confidence", "mean_uncertainty", "empty", "refinement",
               "outside_vertebra", "mask_contrast_hu", "polarity")
OUTPUT_FILE_ENDING = ".nii.gz"
OVERLAP_POLICY = ("each box's rule sees that box's own voxels; the case mask is the union of the per-box "
                  "selections (a voxel in several boxes is kept if any of them keeps it); 0 outside every box")


def case_pseudo_mask(case: str, probability: np.ndarray, uncertainty: np.ndarray, boxes: Sequence[BoxEntry],
                     rule: Rule, refinement: Refinement = Refinement("none"), ct_hu: Optional[np.ndarray] = None,
                     spacing: Optional[tuple[float, ...]] = None,
                     vertebrae: Optional[CaseVertebrae] = None,
                     dark_lesions: float = 0.0, dark_grow: float = 0.0) -> tuple[np.ndarray, list[dict]]:
    """Pseudo-mask of one case (uint8 0/1, zero outside every box) and one table row per box.

    Args:
        case: case id (for the rows).
        probability: fused fracture probability, (k, j, i).
        uncertainty: uncertainty map of the same shape.
        boxes: the case's boxes, inside the image.
        rule: the selection rule.
        refinement: how each box's selection is refined on the CT (``method="none"``: not at all).
        ct_hu: the CT in HU, same shape (needed unless ``refinement.method == "none"``).
        spacing: voxel spacing in the array's axis order (mm).
        vertebrae: the case's vertebra map: each box's mask is clipped to its vertebra's interior (``None``: not).
        dark_lesions: HU; > 0: a box whose P prefers the dark part of its bone gets the bone this far below its
            median HU as its mask (module docstring; needs ``ct_hu`` and ``vertebrae``). 0: off.
        dark_grow: HU; > 0: each dark mask grows through its bone more than this far below the median (0: not).
    """
    if refinement.method != "none" and ct_hu is None:
        raise ValueError(f"case {case}: refinement {refinement.method!r} needs the CT")
    if check_below_hu(dark_lesions) and (ct_hu is None or vertebrae is None):
        raise ValueError(f"case {case}: dark lesions need the CT and the vertebra maps (--inside-vertebra)")
    mask = np.zeros(probability.shape, dtype=np.uint8)
    rows = []
    for entry in boxes:
        region = entry.region
        p = probability[region]
        selection = select_in_box(p, rule)
        allowed = np.ones(p.shape, dtype=bool) if vertebrae is None else vertebrae.interior(entry.label)[region]
        polarity = "" if not dark_lesions else (
            "dark" if box_polarity(ct_hu[region], p, allowed).dark else "bright")
        if polarity == "dark":  # the lesion's mask replaces the rule's: nothing to refine
            keep, outside = dark_lesion_mask(ct_hu[region], allowed, dark_lesions, dark_grow), 0
            outcome = "none" if refinement.method == "none" else "dark_lesion"
        else:
            refined = refine_box(ct_hu, probability, region, selection.keep, refinement, spacing)
            keep, outside, outcome = (refined.keep & allowed, int(np.count_nonzero(refined.keep & ~allowed)),
                                      refined.outcome)
        mask[region] |= keep.astype(np.uint8)
        kept = int(np.count_nonzero(keep))
        confidence = float(p[keep].mean(dtype=np.float64)) if kept else math.nan
        rows.append({"case": case, "box_id": entry.box_id, "label": entry.label, "rule": rule.name,
                     "threshold": selection.threshold, "comparison": selection.comparison,
                     "voxels_in_box": int(p.size), "voxels_kept": kept, "max_probability": float(p.max()),
                     "mean_probability": float(p.mean(dtype=np.float64)), "mask_confidence": confidence,
                     "mean_uncertainty": float(uncertainty[region].mean(dtype=np.float64)), "empty": kept == 0,
                     "refinement": outcome,
                     "outside_vertebra": outside,
                     "mask_contrast_hu": math.nan if ct_hu is None else mask_contrast_hu(ct_hu[region], keep, allowed),
                     "polarity": polarity})
    return mask, rows


def _threshold_summary(rows: list[dict]) -> dict:
    values = np.array([r["threshold"] for r in rows if math.isfinite(r["threshold"])], dtype=np.float64)
    if values.size == 0:
        return {"num_boxes": len(rows), "min": None, "median": None, "max": None}
    return {"num_boxes": len(rows), "min": float(values.min()), "median": float(np.median(values)),
            "max": float(values.max())}


def _provenance(folders: Sequence[PredictionFolder], source: SourceDataset, rule: Rule, kind: str,
                rows: list[dict], cases: list[str], export: Optional[DatasetExport],
                refinement: Refinement, options: LabelOptions, unsure: dict[str, set[int]],
                faint: dict[str, set[int]]) -> dict:
    from nnunet_fracture import __version__

    empty = [{"case": r["case"], "box_id": r["box_id"]} for r in rows if r["empty"]]
    return {
        "plugin_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source_dataset": str(source.folder),
        "source_dataset_name": source.meta.get("name", source.folder.name),
        "prediction_folders": [str(f.path) for f in folders],
        "models": [model_info(f) for f in folders],
        "fusion": "mean over the prediction folders (one per fold)" if len(folders) > 1 else "single folder",
        "uncertainty": {"kind": kind, "description": UNCERTAINTY_KINDS[kind]},
        "rule": rule.name,
        "parameters": rule.parameters(),
        "refinement": refinement.parameters(),
        "inside_vertebra": None if options.inside_vertebra is None else {
            "shell_mm": options.inside_vertebra, "voxels_removed": sum(r["outside_vertebra"] for r in rows)},
        "dark_lesions": None if not options.dark_lesions else {
            "below_hu": options.dark_lesions, "grow_hu": options.dark_grow,
            "dark_boxes": [{"case": r["case"], "box_id": r["box_id"]} for r in rows if r["polarity"] == "dark"]},
        "ignore_band": list(options.ignore_band) if options.ignore_band is not None else None,
        "ignore_ring": options.ignore_ring,
        "ignore_unsure": options.ignore_unsure,
        "unsure_boxes": [{"case": r["case"], "box_id": r["box_id"], "mask_confidence": r["mask_confidence"]}
                         for r in rows if r["box_id"] in unsure.get(r["case"], ())],
        "ignore_faint": options.ignore_faint,
        "ignore_dark_margin": options.ignore_dark_margin,
        "faint_boxes": [{"case": r["case"], "box_id": r["box_id"], "mask_contrast_hu": r["mask_contrast_hu"]}
                        for r in rows if r["box_id"] in faint.get(r["case"], ())],
        "refinement_outcomes": {o: sum(r["refinement"] == o for r in rows)
                                for o in sorted({r["refinement"] for r in rows})},
        "box_regions": OVERLAP_POLICY,
        "thresholds": _threshold_summary(rows),
        "num_cases": len(cases),
        "num_boxes": len(rows),
        "num_empty_boxes": len(empty),
        "empty_boxes": empty,
        "export_dataset": str(export.target) if export is not None else None,
        "outputs": {"masks": "masks/<case>.nii.gz (uint8 0/1)", "probabilities": "probabilities/<case>.nii.gz "
                    "(float32 fused fracture probability)", "uncertainty": "uncertainty/<case>.nii.gz (float32)",
                    "table": "pseudo_masks.csv (one row per box)"},
    }


def _write(image: sitk.Image, path: Path) -> None:
    write_image(image, path)


def write_pseudo_masks(predictions: Sequence[Path | str], dataset: str | int | Path, out: Path | str,
                       rule: str = "fixed", threshold: float = 0.5, fraction: float = 0.3,
                       min_threshold: float = 0.05, export_dataset: Optional[int] = None,
                       export_name: Optional[str] = None, overwrite: bool = False,
                       refine: str = "none", options: LabelOptions = LabelOptions()) -> dict:
    """Write pseudo-masks, probabilities, uncertainty maps, the box table and provenance to ``out``.

    Args:
        predictions: nnUNetv2_predict output folders made with ``--save_probabilities``; several = one per fold.
        dataset: the raw dataset predicted from: ID, ``DatasetXXX_NAME`` or folder (must hold ``boxes.json``).
        out: output folder; must not exist or be empty unless ``overwrite``.
        rule: ``"fixed"``, ``"otsu"`` or ``"fraction"`` (module docstring).
        threshold: P threshold of the fixed rule.
        fraction: share of each box's voxels kept by the fraction rule.
        min_threshold: lowest P the otsu and fraction rules ever keep.
        export_dataset: also write ``$nnUNet_raw/DatasetXXX_<export_name>`` with the masks as labels.
        export_name: name of the exported dataset (required with ``export_dataset``).
        overwrite: replace an existing ``out`` and an existing dataset with the export ID.
        refine: ``"none"`` or ``"random_walker"`` (module docstring).
        options: where masks may lie, dark lesions, and (with ``export_dataset`` only) which voxels of the exported
            labels are nnU-Net's ignore label (:class:`~nnunet_fracture.inference.label_options.LabelOptions`;
            ``inside_vertebra`` needs the dataset's ``vertebraeTr``).

    Returns:
        The provenance dictionary written to ``pseudo_masks.json``.

    Raises:
        ValueError, FileNotFoundError, FileExistsError: bad input, with the file, case and fix named. Nothing is
            written then.
    """
    selection_rule = Rule(rule, threshold, fraction, min_threshold)
    refinement = Refinement(refine)
    options.check_export(export_dataset is not None)
    shell_mm = options.inside_vertebra
    if (export_dataset is None) != (export_name is None):
        raise ValueError("--export-dataset and --name go together. Fix: pass both (e.g. --export-dataset 502 "
                         "--name PhantomPseudo) or neither.")
    out = Path(out).absolute()
    check_output_folder(out, overwrite)
    source = SourceDataset.open(dataset)
    folders = open_prediction_folders(predictions, source.file_ending)
    cases = select_cases(folders, source.cases, source.boxes_file)
    check_output_not_an_input(out, [f.path for f in folders] + [source.folder])
    if shell_mm is not None:
        check_vertebra_maps(source, cases)
    export = (DatasetExport(export_dataset, export_name, source, overwrite, with_ignore=options.ignores)
              if export_dataset is not None else None)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        for sub in ("masks", "probabilities", "uncertainty"):
            (tmp / sub).mkdir(parents=True)
        if export is not None:
            export.start()
        rows: list[dict] = []
        kinds = set()
        for case in tqdm(cases, desc="pseudo-masks", unit="case"):
            image_file = source.image_file(case)
            grid = read_grid(image_file, f"case {case}: image", f"restore {source.folder / 'imagesTr'}")
            boxes = source.case_boxes(case, tuple(grid.GetSize()))
            probability, uncertainty, kind = fused_probability(folders, case, grid, image_file)
            kinds.add(kind)
            ct_hu, spacing = sitk.GetArrayFromImage(sitk.ReadImage(str(image_file))), tuple(grid.GetSpacing()[::-1])
            vertebrae = None if shell_mm is None else CaseVertebrae(
                read_vertebra_map(source, case, grid), spacing, shell_mm)
            mask, case_rows = case_pseudo_mask(case, probability, uncertainty, boxes, selection_rule, refinement,
                                               ct_hu, spacing, vertebrae, options.dark_lesions, options.dark_grow)
            rows.extend(case_rows)
            mask_image = array_to_image(mask, grid)
            _write(mask_image, tmp / "masks" / f"{case}{OUTPUT_FILE_ENDING}")
            _write(array_to_image(probability, grid), tmp / "probabilities" / f"{case}{OUTPUT_FILE_ENDING}")
            _write(array_to_image(uncertainty, grid), tmp / "uncertainty" / f"{case}{OUTPUT_FILE_ENDING}")
            del probability, uncertainty, mask, mask_image
        (kind,) = kinds
        unsure = unsure_boxes(rows, options.ignore_unsure)  # ranked over every box: known only now
        faint = faint_boxes(rows, options.ignore_faint)
        dark = dark_boxes(rows)
        if export is not None:
            for case in cases:  # the labels from the masks and probabilities just written
                mask_image = sitk.ReadImage(str(tmp / "masks" / f"{case}{OUTPUT_FILE_ENDING}"))
                if options.ignores:
                    mask = sitk.GetArrayFromImage(mask_image)
                    probability = sitk.GetArrayFromImage(
                        sitk.ReadImage(str(tmp / "probabilities" / f"{case}{OUTPUT_FILE_ENDING}")))
                    boxes = source.case_boxes(case, tuple(mask_image.GetSize()))
                    mask_image = array_to_image(ignored_labels(mask, probability, boxes, options.ignore_band,
                                                               options.ignore_ring,
                                                               unsure.get(case, set()) | faint.get(case, set()),
                                                               dark.get(case, set()), options.ignore_dark_margin),
                                                mask_image)
                export.add_case(case, mask_image)
        provenance = _provenance(folders, source, selection_rule, kind, rows, cases, export, refinement, options,
                                 unsure, faint)
        pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_csv(tmp / "pseudo_masks.csv", index=False)
        (tmp / "pseudo_masks.json").write_text(json.dumps(provenance, indent=2))
        if export is not None:
            export.finish(provenance)
        check_output_folder(out, overwrite)
        trash = swap_in(tmp, out)
        if export is not None:
            try:
                export.install()
            except BaseException:
                os.replace(out, tmp)
                if trash is not None:
                    os.replace(trash, out)
                raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if export is not None:
            export.discard()
        raise
    return provenance
