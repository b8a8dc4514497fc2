"""Read the RSNA 2022 Cervical Spine Fracture Detection data as a stream of CaseRecords.

Layout read::

    ROOT/train_images/<StudyInstanceUID>/<n>.dcm   one axial slice per file, n = slice number (InstanceNumber)
    ROOT/train_bounding_boxes.csv                  StudyInstanceUID,x,y,width,height,slice_number
    ROOT/train.csv                                 StudyInstanceUID,patient_overall,C1..C7
    ROOT/segmentations/<StudyInstanceUID>.nii      vertebra labels (1-7 C1-C7, 8-19 T1-T12), a subset only

Studies with boxes become fractured cases; studies with ``patient_overall == 0`` and images become
fracture-free cases; studies with ``patient_overall == 1`` but no box are skipped with a warning (a fracture
without a box cannot be used as a weak label). The case id is the StudyInstanceUID with every ``.`` replaced
by ``_`` (UIDs are digits and dots, so the id is a plain name); ``CaseRecord.source`` is the study's image folder,
whose name is the original UID.

Slices and boxes. Each series is read with SimpleITK's ImageSeriesReader from the file list GDCM sorts by
position along the slice normal, so voxel index k grows along the normal (for the usual axial orientation:
inferior to superior), whatever the file names or InstanceNumbers say. A box's ``slice_number`` is mapped to k
through the file it names (the integer file stem; the InstanceNumber where the stem is not an integer), never
by assuming that slice numbers and k run the same way (in most RSNA studies they run in opposite directions).
Box pixels: x is the column (ITK index i), y the row (index j); a box covers columns ``floor(x)`` to
``ceil(x + width) - 1`` (so an integer box x=10, width=5 covers 10..14; fractional edges are rounded outward),
clipped to the image. Per-slice boxes whose slices are adjacent in k (or equal) and whose pixel rectangles share
at least one pixel are joined (connected components); each component becomes one 3D box spanning the union of
its rectangles and its slice range, so a gap of one slice or disjoint rectangles start a new box.

Segmentation orientation. The NIfTI segmentations are not stored in the DICOM slice order. The convention the
competition's participants established (Kaggle discussion 346981 "reversed" studies; the 5th-place solution,
github.com/pascal-pfeiffer/kaggle-rsna-2022-5th-place, scripts/preprocess_mask_2d.py and
scripts/get_reversed_dicoms.py; other public solutions do the same) is: with nibabel's array ``seg[i, j, k]``,
``seg[:, ::-1, ::-1].transpose(2, 1, 0)`` lines up with the slices sorted by slice number when the first slice
is the most superior one, and that result must be flipped along the slices again for studies whose first slice
is the most inferior. Put directly: NIfTI voxel (i, j, k) is DICOM column i, row ``rows - 1 - j``, of the slice
with the k-th smallest patient z (ImagePositionPatient[2]). This reader first tries the NIfTI header: when the
segmentation's physical geometry, as SimpleITK reads it, maps the CT grid voxel-for-voxel onto the segmentation
grid (an axis permutation/flip with the same number of voxels, within 0.1 voxel), it is resampled onto the CT
by physical coordinates with nearest-neighbour interpolation, which is exact there. Otherwise the array
convention above is applied (after checking that the segmentation has exactly columns x rows x slices voxels)
and the CT's geometry is copied onto the result. Where both are possible and disagree a warning is logged and
the header wins. A segmentation that fits neither is dropped with a warning (the case keeps its boxes, with
empty labels). Each box is labelled with the majority non-zero vertebra label inside it (ties: the lower
label), or "" without a segmentation.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import SimpleITK as sitk

from .case import CASE_ID_PATTERN, CaseRecord, VoxelBox
from .generic import read_csv_rows
from .vertebra_labels import LABEL_NAMES

log = logging.getLogger(__name__)

BOX_COLUMNS = ("StudyInstanceUID", "x", "y", "width", "height", "slice_number")
_EPS = 1e-6
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
Rect = tuple[int, int, int, int, int]  # k, x_lo, y_lo, x_hi, y_hi (inclusive)


def check_uid(uid: str, where: str) -> str:
    """``uid`` if it is a DICOM UID (digits in dot-separated groups, at most 64 characters); it names a folder
    under ``train_images/``, so anything else (``..``, a path) could read files outside the competition folder."""
    if not _UID.fullmatch(uid) or len(uid) > 64:
        raise ValueError(f"{where}: StudyInstanceUID {uid!r} is not a DICOM UID (digits separated by dots, at most "
                         f"64 characters); it names the study's folder under train_images/, so it must not be a "
                         f"path. Fix: correct the row.")
    return uid


def rsna_case_id(uid: str) -> str:
    """Case id of a study: the StudyInstanceUID with ``.`` replaced by ``_``."""
    case_id = uid.strip().replace(".", "_")
    if not CASE_ID_PATTERN.match(case_id):
        raise ValueError(f"StudyInstanceUID {uid!r} does not give a plain case id (letters, digits, '_', '-')")
    return case_id


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    fields, rows = read_csv_rows(path)
    missing = [c for c in required if c not in fields]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (found {fields}); the RSNA-2022 file "
                         f"has {', '.join(required)}")
    return [(line, {k: v.strip() for k, v in zip(fields, cells)}) for line, cells in rows]


def _number(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise ValueError(f"{where}: {what} {text!r} is not a finite number; fix the row")
    return value


def read_box_table(path: Path) -> dict[str, list[tuple[int, float, float, float, float, int]]]:
    """Read ``train_bounding_boxes.csv`` into StudyInstanceUID -> [(line, x, y, width, height, slice_number)].

    Raises:
        ValueError: on missing columns, a row with more or fewer fields than the header, non-numeric values,
            negative sizes or non-integer slice numbers.
    """
    boxes: dict[str, list[tuple[int, float, float, float, float, int]]] = {}
    for line, row in _read_csv(path, BOX_COLUMNS):
        where = f"{path} line {line}"
        x, y, w, h = (_number(row[c], where, c) for c in ("x", "y", "width", "height"))
        if w < 0 or h < 0:
            raise ValueError(f"{where}: negative width/height ({w}, {h}); fix the box")
        s = _number(row["slice_number"], where, "slice_number")
        if s != int(s):
            raise ValueError(f"{where}: slice_number {row['slice_number']!r} is not an integer; fix the row")
        boxes.setdefault(check_uid(row["StudyInstanceUID"], where), []).append((line, x, y, w, h, int(s)))
    return boxes


def pixel_box_to_index(x: float, y: float, width: float, height: float,
                       size_xy: tuple[int, int]) -> Optional[tuple[int, int, int, int]]:
    """Inclusive (x_lo, y_lo, x_hi, y_hi) voxel indices of a pixel box, rounded outward and clipped.

    Pixel p covers [p, p + 1), so the box [x, x + width) covers columns floor(x) .. ceil(x + width) - 1 (at
    least one). Returns None when the box lies entirely outside the image.
    """
    lo = [math.floor(v + _EPS) for v in (x, y)]
    hi = [max(math.ceil(v + d - _EPS) - 1, l) for v, d, l in zip((x, y), (width, height), lo)]
    if any(h < 0 or l > n - 1 for l, h, n in zip(lo, hi, size_xy)):
        return None
    lo = [max(l, 0) for l in lo]
    hi = [min(h, n - 1) for h, n in zip(hi, size_xy)]
    return lo[0], lo[1], hi[0], hi[1]


def merge_slice_boxes(rects: list[Rect]) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Join per-slice rectangles into 3D boxes (see the module docstring).

    Args:
        rects: (k, x_lo, y_lo, x_hi, y_hi), inclusive voxel indices.

    Returns:
        (lo, hi) per 3D box in ITK index order, sorted by lo (k first).
    """
    parent = list(range(len(rects)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    by_slice: dict[int, list[int]] = {}
    for n, rect in enumerate(rects):
        by_slice.setdefault(rect[0], []).append(n)
    for n, (k, x0, y0, x1, y1) in enumerate(rects):
        for m in by_slice.get(k, []) + by_slice.get(k + 1, []):
            _, a0, b0, a1, b1 = rects[m]
            if m != n and x0 <= a1 and a0 <= x1 and y0 <= b1 and b0 <= y1:
                parent[find(m)] = find(n)
    groups: dict[int, list[Rect]] = {}
    for n, rect in enumerate(rects):
        groups.setdefault(find(n), []).append(rect)
    boxes = []
    for members in groups.values():
        ks, x0s, y0s, x1s, y1s = zip(*members)
        boxes.append(((min(x0s), min(y0s), min(ks)), (max(x1s), max(y1s), max(ks))))
    return sorted(boxes, key=lambda b: (b[0][2], b[0][1], b[0][0]))


def read_series(folder: Path) -> tuple[sitk.Image, dict[int, int]]:
    """Read one study's DICOM series in HU and map each slice number to its voxel index k.

    Returns:
        The CT (Int16 when the values allow it) and {slice number: k}.
    """
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise FileNotFoundError(f"no DICOM series in {folder}; expected train_images/<StudyInstanceUID>/<n>.dcm")
    names_per_series = [reader.GetGDCMSeriesFileNames(str(folder), s) for s in series]
    names = max(names_per_series, key=len)
    if len(series) > 1:
        log.warning("%s holds %d series; using the largest (%d files)", folder, len(series), len(names))
    reader.SetFileNames(names)
    image = reader.Execute()
    if image.GetDimension() != 3 or image.GetSize()[2] != len(names):
        raise ValueError(f"{folder}: the series did not read as one 3D volume of {len(names)} slices")
    slice_of: dict[int, int] = {}
    for k, name in enumerate(names):
        stem = Path(name).stem
        if stem.isdigit():
            number = int(stem)
        else:
            info = sitk.ImageFileReader()
            info.SetFileName(name)
            info.ReadImageInformation()
            if not info.HasMetaDataKey("0020|0013"):
                raise ValueError(f"{name}: file name is not a slice number and InstanceNumber is missing")
            number = int(float(info.GetMetaData("0020|0013")))
        if number in slice_of:
            raise ValueError(f"{folder}: two files have slice number {number}; remove the duplicate")
        slice_of[number] = k
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        stats = sitk.MinimumMaximumImageFilter()
        stats.Execute(image)
        if -32768 <= stats.GetMinimum() and stats.GetMaximum() <= 32767:
            image = sitk.Cast(image, sitk.sitkInt16)
    return image, slice_of


def _grid_maps_onto(seg: sitk.Image, ct: sitk.Image, tol: float = 0.1) -> bool:
    """True when the CT grid maps voxel-for-voxel onto the segmentation grid by physical coordinates."""
    def seg_index(index: tuple[float, float, float]) -> np.ndarray:
        point = ct.TransformContinuousIndexToPhysicalPoint(index)
        return np.array(seg.TransformPhysicalPointToContinuousIndex(point))

    origin = seg_index((0.0, 0.0, 0.0))
    steps = np.stack([seg_index(tuple(float(a == b) for b in range(3))) - origin for a in range(3)], axis=1)
    rounded = np.round(steps)
    if (np.abs(steps - rounded).max() > tol or np.abs(origin - np.round(origin)).max() > tol
            or not np.array_equal(np.abs(rounded).sum(axis=0), [1, 1, 1])
            or not np.array_equal(np.abs(rounded).sum(axis=1), [1, 1, 1])):
        return False
    seg_size = np.array(seg.GetSize())
    if not np.array_equal(np.abs(rounded) @ np.array(ct.GetSize()), seg_size):
        return False
    far = np.round(origin) + rounded @ (np.array(ct.GetSize()) - 1)
    return bool(np.all(np.minimum(np.round(origin), far) >= 0) and np.all(np.maximum(np.round(origin), far) < seg_size))


def _by_convention(seg: sitk.Image, ct: sitk.Image) -> Optional[sitk.Image]:
    """The community array convention (module docstring), or None when the sizes or orientation do not fit."""
    cols, rows, slices = ct.GetSize()
    z_of_k = ct.GetDirection()[8]  # patient-z component of the k axis
    if seg.GetSize() != (cols, rows, slices) or abs(z_of_k) < 0.5:
        return None
    values = sitk.GetArrayFromImage(seg)[:, ::-1, :]  # (k, j, i): rows flipped
    if z_of_k < 0:  # k runs superior -> inferior, the NIfTI inferior -> superior
        values = values[::-1]
    out = sitk.GetImageFromArray(np.ascontiguousarray(values))
    out.CopyInformation(ct)
    return out


def segmentation_on_ct(path: Path, ct: sitk.Image, case_id: str) -> Optional[sitk.Image]:
    """Put an RSNA vertebra segmentation onto the CT grid (UInt8), or None with a warning when it cannot be."""
    seg = sitk.ReadImage(str(path))
    values = sitk.GetArrayViewFromImage(seg)
    if (seg.GetDimension() != 3 or values.min() < 0 or values.max() > 255
            or not np.array_equal(values, np.round(values))):
        log.warning("case %s: segmentation %s is not a 3D label map with labels 0-255; ignored", case_id, path)
        return None
    seg = sitk.Cast(seg, sitk.sitkUInt8)
    by_convention = _by_convention(seg, ct)
    if _grid_maps_onto(seg, ct):
        on_ct = sitk.Resample(seg, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        if by_convention is not None and not np.array_equal(sitk.GetArrayViewFromImage(on_ct),
                                                            sitk.GetArrayViewFromImage(by_convention)):
            log.warning("case %s: %s: the NIfTI header and the community array convention disagree; using the "
                        "header geometry", case_id, path)
        return on_ct
    if by_convention is None:
        log.warning("case %s: segmentation %s has size %s, the CT %s, and its header does not place it on the CT "
                    "grid; segmentation ignored (boxes get no vertebra label)", case_id, path, seg.GetSize(),
                    ct.GetSize())
    return by_convention


def _majority_label(values: np.ndarray, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> str:
    region = values[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1]
    labels = region[region > 0]
    if labels.size == 0:
        return ""
    return LABEL_NAMES.get(int(np.bincount(labels).argmax()), "")


def _study_list(root: Path, boxes: dict[str, list], images: Path) -> list[str]:
    """Studies to convert, in train.csv order followed by box-only studies."""
    train_csv = root / "train.csv"
    overall: dict[str, int] = {}
    if train_csv.is_file():
        for line, row in _read_csv(train_csv, ("StudyInstanceUID", "patient_overall")):
            value = _number(row["patient_overall"], f"{train_csv} line {line}", "patient_overall")
            overall[check_uid(row["StudyInstanceUID"], f"{train_csv} line {line}")] = int(value)
    else:
        log.warning("%s not found: only studies with boxes are converted (no fracture-free cases)", train_csv)
    studies = []
    for uid, flag in overall.items():
        if uid in boxes:
            if flag == 0:
                log.warning("study %s has boxes but patient_overall = 0 in %s; converted as fractured", uid, train_csv)
            studies.append(uid)
        elif flag == 0:
            if (images / uid).is_dir():
                studies.append(uid)
            else:
                log.info("fracture-free study %s has no images in %s; skipped", uid, images)
        else:
            log.warning("study %s has patient_overall = %d but no box in train_bounding_boxes.csv; skipped (a fracture "
                        "without a box cannot be a weak label)", uid, flag)
    studies += [uid for uid in boxes if uid not in overall]
    return studies


def read_rsna(root: Path, max_cases: Optional[int] = None) -> Iterator[CaseRecord]:
    """Yield one CaseRecord per usable RSNA-2022 study, one study at a time.

    Args:
        root: the competition folder (train_images/, train_bounding_boxes.csv, train.csv, segmentations/).
        max_cases: convert at most this many studies (None: all).

    Yields:
        CaseRecord with the CT in HU, the merged 3D boxes (label = majority vertebra or ""), the vertebra map
        where a segmentation exists, and ``source`` = the study's image folder.

    Raises:
        FileNotFoundError: missing folder or table, or a study with boxes but no images.
        ValueError: malformed tables, a box on a slice number the series does not have, or a box outside
            the image.
    """
    root = Path(root)
    if max_cases is not None and max_cases < 1:
        raise ValueError(f"max_cases must be at least 1, got {max_cases}")
    images, boxes_csv = root / "train_images", root / "train_bounding_boxes.csv"
    for path in (images, boxes_csv):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; pass the RSNA-2022 competition folder that holds "
                                    "train_images/ and train_bounding_boxes.csv")
    boxes = read_box_table(boxes_csv)
    studies = _study_list(root, boxes, images)
    for count, uid in enumerate(studies):
        if max_cases is not None and count >= max_cases:
            return
        folder = images / uid
        case_id = rsna_case_id(uid)
        if not folder.is_dir():
            raise FileNotFoundError(f"study {uid} (case {case_id}) has boxes in {boxes_csv} but no folder {folder}; "
                                    "add its images or remove its rows")
        image, slice_of = read_series(folder)
        rects: list[Rect] = []
        for line, x, y, w, h, number in boxes.get(uid, []):
            where = f"{boxes_csv} line {line} (case {case_id})"
            if number not in slice_of:
                raise ValueError(f"{where}: slice_number {number} is not a slice of {folder} (slices "
                                 f"{min(slice_of)}..{max(slice_of)}); fix the row")
            xy = pixel_box_to_index(x, y, w, h, image.GetSize()[:2])
            if xy is None:
                raise ValueError(f"{where}: box x={x}, y={y}, width={w}, height={h} lies outside the "
                                 f"{image.GetSize()[0]}x{image.GetSize()[1]} slice; fix the row")
            rects.append((slice_of[number], *xy))
        vertebrae = None
        for seg_path in (root / "segmentations" / f"{uid}.nii", root / "segmentations" / f"{uid}.nii.gz"):
            if seg_path.is_file():
                vertebrae = segmentation_on_ct(seg_path, image, case_id)
                break
        values = sitk.GetArrayViewFromImage(vertebrae) if vertebrae is not None else None
        merged = [VoxelBox(lo, hi, label=_majority_label(values, lo, hi) if values is not None else "")
                  for lo, hi in merge_slice_boxes(rects)]
        yield CaseRecord(case_id=case_id, image=image, boxes=merged, vertebrae=vertebrae, source=str(folder))
