"""Write a stream of :class:`CaseRecord` objects as one nnU-Net v2 raw dataset, atomically.

Every converter (generic CSV, VerSe, RSNA-2022, phantom) ends in :func:`write_raw_dataset`, so validation,
weak-label modes, per-vertebra crops and atomic writing exist once. Layout written under ``raw_root``
(default: ``$nnUNet_raw``)::

    DatasetXXX_NAME/
      imagesTr/{case}_0000.nii.gz   CT (HU), pixel type preserved (int16 typical)
      labelsTr/{case}.nii.gz        uint8. box mode: the box number n (1..K, boxes.json order; a later box wins
                                    where boxes overlap) inside box n, 0 outside every box; slice mode: n on
                                    every voxel of the slices k in [lo_k, hi_k] of box n; mask mode: the GT
                                    mask (> 0 -> 1)
      groundTruthTr/{case}.nii.gz   uint8 GT fracture masks, only for cases that have one (evaluation only,
                                    never read by nnU-Net training)
      vertebraeTr/{case}.nii.gz     uint16 vertebra label maps, where present
      boxes.json                    {case: [{box_id, lo, hi, world_min, world_max, label, grade}]}; lo/hi are
                                    inclusive ITK indices (i, j, k), world_* the mm bounding box of the box's
                                    corner voxel centres (LPS)
      dataset.json                  channel_names {"0": "CT"}, numTraining, file_ending ".nii.gz",
                                    "nnunet_fracture": provenance, and labels: mask mode {background: 0,
                                    fracture: 1}; box and slice modes {background: 0, fracture: [1, ..., K_max]}
                                    with regions_class_order [1]

Box and slice modes keep each box's identity in the label itself, so that it survives nnU-Net's
preprocessing, patch sampling, augmentation and deep-supervision downsampling (all nearest-neighbour or
per-label for segmentations): the weak-box trainers see every box as its own bag. To stock nnU-Net the
dataset is region-based with one region, "fracture" = every box number, so it trains one sigmoid output and
``nnUNetv2_predict`` writes one fracture probability channel. ``K_max`` is the largest number of boxes in one
case, at least 2 (nnU-Net treats a one-element list as a plain label).

Atomicity (:mod:`~nnunet_fracture.dataset_conversion.dataset_folders`): the dataset is built in a hidden folder
``.DatasetXXX_NAME.partial-*`` next to the target (same file system) and renamed into place only when complete. On any error - bad input found half-way, a reader
failing, Ctrl-C - the partial folder is removed and an existing dataset is left untouched. With
``overwrite=True`` an existing ``DatasetXXX_*`` (any name) is replaced only after the new one is complete.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.dataset_conversion.box_geometry import (MAX_BOXES_PER_CASE, rasterise_boxes,
                                                             voxel_to_world_box)
from nnunet_fracture.dataset_conversion.case import CASE_ID_PATTERN, CaseRecord
from nnunet_fracture.dataset_conversion.case_checks import describe, label_array, validate_case
from nnunet_fracture.dataset_conversion.dataset_folders import dataset_folder_name, staged_dataset
from nnunet_fracture.dataset_conversion.vertebra_crops import crop_case
from nnunet_fracture.io.reference_grid import array_to_image
from nnunet_fracture.io.verified_writes import write_image

WEAK_MODES = ("box", "slice", "mask")
FILE_ENDING = ".nii.gz"
LABEL_MEANING = {
    "box": "n = inside box n of boxes.json (a MIL bag; the later box where boxes overlap), 0 = outside every box "
           "(certain background)",
    "slice": "n = on a slice k within the k-range of box n (whole slices), 0 = on no such slice",
    "mask": "ground-truth fracture mask (fully supervised)",
}


def read_boxes_json(path: Path | str) -> dict[str, list[dict]]:
    """Read a ``boxes.json`` written by :func:`write_raw_dataset`: ``{case: [box entry, ...]}`` (``[]`` for a
    fracture-free case). Entries are returned as stored; callers check the fields they use.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file (and case), when it is not JSON, not a mapping, or a case's value is not a list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes file {path} does not exist. Fix: pass the boxes.json that `nnunet-fracture "
                                f"convert` wrote next to imagesTr.")
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"boxes file {path} is not valid JSON ({e}). Fix: pass the boxes.json written by "
                         f"`nnunet-fracture convert`.") from None
    if not isinstance(table, dict):
        raise ValueError(f"boxes file {path} must map case ids to lists of boxes, got {type(table).__name__}, e.g. "
                         f'{{"case_1": [{{"lo": [i, j, k], "hi": [i, j, k]}}]}}')
    for case, entries in table.items():
        if not isinstance(entries, list):
            raise ValueError(f"case {case}: boxes in {path} must be a list of boxes ([] for a fracture-free case), "
                             f"got {entries!r}")
    return table


def _check_arguments(dataset_id: object, name: object, weak: object, context: object) -> None:
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, np.integer)) or not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be an integer from 1 to 999 (nnU-Net's DatasetXXX numbering), got "
                         f"{dataset_id!r}. Fix: pick a free number, e.g. --dataset-id 501.")
    if not isinstance(name, str) or not CASE_ID_PATTERN.match(name):
        raise ValueError(f"dataset name {name!r} is not allowed: use letters, digits, '_' and '-' only "
                         f"(it becomes the folder name DatasetXXX_NAME). Fix: e.g. --name SpineFractures.")
    if weak not in WEAK_MODES:
        raise ValueError(f"unknown weak-label mode {weak!r}; expected one of {', '.join(WEAK_MODES)}")
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 0:
        raise ValueError(f"context must be a whole number of vertebrae >= 0, got {context!r}")


def _write(image: sitk.Image, path: Path) -> None:
    write_image(image, path)


def _label_image(case: CaseRecord, weak: str) -> sitk.Image:
    """The ``labelsTr`` image of one validated case."""
    if weak == "mask":
        if case.mask is None:
            if case.boxes:
                raise ValueError(
                    f"{describe(case.case_id, case.source)}: --weak mask uses the ground-truth mask as the label, "
                    f"but this case has {len(case.boxes)} box(es) and no mask. Fix: add masks/{case.case_id}.nii.gz "
                    f"or use --weak box.")
            shape = tuple(case.image.GetSize())[::-1]
            return array_to_image(np.zeros(shape, dtype=np.uint8), case.image)
        mask = label_array(case.mask, "mask", case.case_id, case.source)
        return array_to_image((mask > 0).astype(np.uint8), case.image)
    return array_to_image(rasterise_boxes(case.boxes, case.image.GetSize(), mode=weak), case.image)


def _check_box_count(case: CaseRecord, weak: str) -> None:
    """Box and slice labels store box n as label value n in a uint8 map: refuse a case with more boxes."""
    if weak != "mask" and len(case.boxes) > MAX_BOXES_PER_CASE:
        raise ValueError(
            f"{describe(case.case_id, case.source)}: {len(case.boxes)} boxes in this case, but --weak {weak} "
            f"stores box n as label value n in a uint8 map, so at most {MAX_BOXES_PER_CASE} boxes fit. Fix: merge "
            f"overlapping or duplicate boxes of this case to at most {MAX_BOXES_PER_CASE} (or use --crop-vertebrae "
            f"or --weak mask).")


def _write_case(folder: Path, case: CaseRecord, weak: str) -> list[dict]:
    """Write every file of one validated case; return its ``boxes.json`` entries."""
    cid = case.case_id
    _write(case.image, folder / "imagesTr" / f"{cid}_0000{FILE_ENDING}")
    _write(_label_image(case, weak), folder / "labelsTr" / f"{cid}{FILE_ENDING}")
    if case.mask is not None:
        mask = label_array(case.mask, "mask", cid, case.source)
        gt = array_to_image((mask > 0).astype(np.uint8), case.image)
        _write(gt, folder / "groundTruthTr" / f"{cid}{FILE_ENDING}")
    if case.vertebrae is not None:
        vert = label_array(case.vertebrae, "vertebra map", cid, case.source)
        if vert.size and int(vert.max()) > np.iinfo(np.uint16).max:
            raise ValueError(f"{describe(cid, case.source)}: vertebra labels above 65535 are not supported")
        _write(array_to_image(vert.astype(np.uint16), case.image), folder / "vertebraeTr" / f"{cid}{FILE_ENDING}")
    entries = []
    for box_id, box in enumerate(case.boxes, start=1):
        world_min, world_max = voxel_to_world_box(case.image, box)
        entries.append({"box_id": box_id, "lo": list(box.lo), "hi": list(box.hi), "world_min": list(world_min),
                        "world_max": list(world_max), "label": box.label, "grade": box.grade})
    return entries


class _CaseIds:
    """Remembers written case ids and rejects duplicates (also ones differing only in letter case)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str]] = {}

    def add(self, case_id: str, source: str, what: str = "case") -> None:
        key = case_id.lower()
        if key in self._seen:
            other_id, other_source = self._seen[key]
            raise ValueError(
                f"{describe(case_id, source)}: duplicate {what} id - {describe(other_id, other_source)} was "
                f"already converted (ids must be unique, ignoring letter case, because they become file names). "
                f"Fix: remove or rename one of them.")
        self._seen[key] = (case_id, source)


def _write_cases(folder: Path, cases: Iterable[CaseRecord], weak: str, crop_vertebrae: bool,
                 context: int, desc: str) -> dict:
    """Validate and write every case into ``folder``; return the boxes table and counts."""
    for name in ("imagesTr", "labelsTr"):
        (folder / name).mkdir()
    boxes: dict[str, list[dict]] = {}
    source_ids, output_ids = _CaseIds(), _CaseIds()
    n_source = 0
    for raw_case in tqdm(cases, desc=desc, unit="case"):
        case = validate_case(raw_case)
        source_ids.add(case.case_id, case.source)
        n_source += 1
        for out in (crop_case(case, context) if crop_vertebrae else [case]):
            output_ids.add(out.case_id, out.source, what="output case")
            _check_box_count(out, weak)
            for optional, present in (("groundTruthTr", out.mask), ("vertebraeTr", out.vertebrae)):
                if present is not None:
                    (folder / optional).mkdir(exist_ok=True)
            boxes[out.case_id] = _write_case(folder, out, weak)
    if not boxes:
        raise ValueError("no cases to convert: the input holds no case. Fix: check the input folder "
                         "(generic format: images/<case_id>.nii.gz).")
    return {"boxes": boxes, "num_source_cases": n_source}


def _labels(weak: str, boxes: dict[str, list[dict]]) -> dict:
    """``labels`` (and ``regions_class_order``) of dataset.json; see the module docstring."""
    if weak == "mask":
        return {"labels": {"background": 0, "fracture": 1}}
    k_max = max([len(v) for v in boxes.values()] + [2])
    return {"labels": {"background": 0, "fracture": list(range(1, k_max + 1))}, "regions_class_order": [1]}


def _dataset_json(folder_name: str, weak: str, crop_vertebrae: bool, context: int, source_format: str,
                  written: dict) -> dict:
    from nnunet_fracture import __version__

    boxes = written["boxes"]
    return {
        "name": folder_name,
        "description": f"Vertebral fracture segmentation, weak labels '{weak}', written by nnunet_fracture",
        "channel_names": {"0": "CT"},
        **_labels(weak, boxes),
        "numTraining": len(boxes),
        "file_ending": FILE_ENDING,
        "nnunet_fracture": {
            "plugin_version": __version__,
            "weak": weak,
            "label_meaning": LABEL_MEANING[weak],
            "source_format": source_format,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "crop_vertebrae": bool(crop_vertebrae),
            "context": int(context) if crop_vertebrae else None,
            "num_source_cases": written["num_source_cases"],
            "num_cases_with_boxes": sum(1 for v in boxes.values() if v),
            "num_boxes": sum(len(v) for v in boxes.values()),
            "box_numbers": None if weak == "mask" else "labelsTr (label value n = box n of boxes.json)",
            "ground_truth": "groundTruthTr (evaluation only; never used for training)",
            "vertebrae": "vertebraeTr",
        },
    }


def write_raw_dataset(cases: Iterable[CaseRecord], dataset_id: int, name: str, weak: str = "box",
                      crop_vertebrae: bool = False, context: int = 1, overwrite: bool = False,
                      source_format: str = "generic", raw_root: Optional[Path | str] = None) -> Path:
    """Validate ``cases`` and write them as ``raw_root/DatasetXXX_NAME`` (layout: module docstring).

    Cases are consumed one at a time, so a generator keeps only one volume in memory.

    Args:
        cases: the cases, e.g. from :func:`~nnunet_fracture.dataset_conversion.generic.read_generic`.
        dataset_id: nnU-Net dataset number, 1-999.
        name: dataset name (letters, digits, ``_``, ``-``).
        weak: label mode - ``"box"``, ``"slice"`` or ``"mask"`` (see module docstring).
        crop_vertebrae: write one case ``<case>_<VERTEBRA>`` per vertebra (needs vertebra maps), see
            :mod:`~nnunet_fracture.dataset_conversion.vertebra_crops`.
        context: neighbouring vertebrae kept on each side of a crop.
        overwrite: replace an existing dataset with the same ID (any name) once the new one is complete.
        source_format: recorded in the provenance block (``generic``, ``verse``, ``rsna``, ``phantom``).
        raw_root: folder to write into; default ``$nnUNet_raw``.

    Returns:
        The written dataset folder.

    Raises:
        ValueError: bad arguments or bad input (message names the case, its source and the fix).
        FileExistsError: the ID is taken and ``overwrite`` is false.
        nnunet_fracture.environment.EnvironmentNotConfigured: ``raw_root`` is None and ``nnUNet_raw`` unset.
    """
    _check_arguments(dataset_id, name, weak, context)
    dataset_id = int(dataset_id)
    if raw_root is None:
        from nnunet_fracture.environment import nnunet_folder

        raw_root = nnunet_folder("nnUNet_raw")
    raw_root = Path(raw_root)
    folder_name = dataset_folder_name(dataset_id, name)
    with staged_dataset(raw_root, dataset_id, name, overwrite) as tmp:
        written = _write_cases(tmp, cases, weak, crop_vertebrae, context, desc=f"writing {folder_name}")
        (tmp / "boxes.json").write_text(json.dumps(written["boxes"], indent=1))
        meta = _dataset_json(folder_name, weak, crop_vertebrae, context, source_format, written)
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
    return raw_root / folder_name
