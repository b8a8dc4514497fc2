"""Reader for the generic input format: ``images/``, optional ``masks/`` and ``vertebrae/``, and ``boxes.csv``.

Layout of ``INPUT``::

    images/<case_id>.nii.gz|.nii|.nrrd|.mha       CT in HU (required, one file per case)
    masks/<case_id>.*                             optional GT fracture masks on the CT grid
    vertebrae/<case_id>.*                         optional vertebra label maps (VerSe numbering) on the CT grid
    boxes.csv                                     case_id,x_min,y_min,z_min,x_max,y_max,z_max,space[,label][,grade]

``space`` is ``world`` (mm in the image's physical LPS frame, as SimpleITK reports it) or ``voxel`` (inclusive
ITK indices i, j, k). A case without rows is fracture-free. A header-only ``boxes.csv`` is valid (no fractures).

:func:`read_generic` checks the file listing and the whole table before returning, then yields one case at a
time. World boxes are converted with :func:`~nnunet_fracture.dataset_conversion.box_geometry.world_to_voxel_box`
and clipped to the image: a world box reaching up to :data:`BOX_OVERHANG_TOLERANCE_MM` past the scan edge is
normal (a fracture at the edge of the field of view) and is clipped with a warning that names it; one reaching
further is refused, because a coordinate that far out (``x_max = 9999``, RAS for LPS, cm for mm) is a mistake
and clipping would silently turn it into a different box. A voxel box must lie inside the image, and a world box
must contain at least one voxel centre of the image.
"""
from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.box_geometry import check_box, clip_box, world_to_voxel_box
from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.case_checks import check_case_id, check_same_geometry, read_ct, read_image
from nnunet_fracture.io.image_files import IMAGE_ENDINGS

BOX_OVERHANG_TOLERANCE_MM = 10.0  # how far a world box may reach past the image (clipped, with a warning)
COORDINATE_COLUMNS = ("x_min", "y_min", "z_min", "x_max", "y_max", "z_max")
REQUIRED_COLUMNS = ("case_id",) + COORDINATE_COLUMNS + ("space",)
OPTIONAL_COLUMNS = ("label", "grade")
SPACES = ("world", "voxel")


@dataclass(frozen=True)
class BoxRow:
    """One validated row of ``boxes.csv``; ``where`` is ``boxes.csv line N`` for error messages."""

    case_id: str
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    space: str
    label: str
    grade: Optional[int]
    where: str


def _case_id_of(path: Path) -> Optional[str]:
    name = path.name
    for suffix in IMAGE_ENDINGS:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def list_case_files(folder: Path) -> dict[str, Path]:
    """Map case id -> file for every image file in ``folder`` (hidden files and sub-folders are skipped).

    Raises:
        ValueError: for a file with an unsupported ending, a case id that is not a plain name, or two files
            with the same case id (``a.nii.gz`` and ``a.mha``).
    """
    files: dict[str, Path] = {}
    by_lower: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        case_id = _case_id_of(path)
        if case_id is None:
            raise ValueError(f"{path}: unsupported file type. Fix: store images as one of "
                             f"{', '.join(IMAGE_ENDINGS)} or move the file out of {folder}.")
        check_case_id(case_id, str(path))
        other = by_lower.get(case_id.lower())
        if other is not None:
            raise ValueError(f"case {case_id!r}: two files in {folder} have this case id: {other.name} and "
                             f"{path.name}. Fix: keep exactly one file per case.")
        files[case_id] = path
        by_lower[case_id.lower()] = path
    return files


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{where}: column {column} must be a finite number, got {text!r}. Fix: correct the row.")
    return value


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _parse_row(row: dict, where: str) -> BoxRow:
    case_id = check_case_id(row["case_id"].strip(), where)
    space = row["space"].strip().lower()
    if space not in SPACES:
        raise ValueError(f"{where}: case {case_id!r}: unknown space {row['space']!r}. Fix: use 'world' "
                         f"(mm, LPS) or 'voxel' (inclusive ITK indices i, j, k).")
    coords = [_number(row[c].strip(), c, f"{where}: case {case_id!r}") for c in COORDINATE_COLUMNS]
    if space == "voxel" and any(c != round(c) for c in coords):
        raise ValueError(f"{where}: case {case_id!r}: voxel coordinates must be whole numbers, got {coords}. "
                         f"Fix: round them or use space 'world' for millimetres.")
    lo, hi = tuple(coords[:3]), tuple(coords[3:])
    if any(a > b for a, b in zip(lo, hi)):
        raise ValueError(f"{where}: case {case_id!r}: box min {lo} is larger than max {hi} on some axis. "
                         f"Fix: swap the min and max values.")
    grade_text = str(row.get("grade", "")).strip()
    grade = None
    if grade_text:
        value = _number(grade_text, "grade", f"{where}: case {case_id!r}") if _is_number(grade_text) else -1.0
        grade = int(value) if value == int(value) and 0 <= value <= 3 else -1
        if grade < 0:
            raise ValueError(f"{where}: case {case_id!r}: grade must be a Genant grade, a whole number from 0 to 3, "
                             f"got {grade_text!r}. Fix: correct it or leave it empty.")
    return BoxRow(case_id, lo, hi, space, str(row.get("label", "")).strip(), grade, where)


def read_csv_rows(csv_path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a CSV file as ``(header, [(line number, fields), ...])``; blank lines are skipped.

    Every row must have as many fields as the header: a stray or missing comma would shift the columns.

    Raises:
        ValueError: the file is not readable CSV text, or a row has more or fewer fields than the header (the
            message names the file, the line and the fix).
    """
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            table = [(reader.line_num, cells) for cells in reader if any(c.strip() for c in cells)]
    except (csv.Error, UnicodeDecodeError) as e:
        raise ValueError(f"{csv_path}: not a readable CSV file ({' '.join(str(e).split())}). Fix: save it as "
                         f"comma-separated UTF-8 text.") from e
    header = [c.strip() for c in table[0][1]] if table else []
    for line, cells in table[1:]:
        if len(cells) != len(header):
            raise ValueError(f"{csv_path} line {line}: {len(cells)} fields but the header has {len(header)} "
                             f"({','.join(header)}); a stray or missing comma shifts the columns. Fix: give the row "
                             f"exactly {len(header)} comma-separated fields, one per header column (leave optional "
                             f"ones empty, quote text that contains a comma).")
    return header, table[1:]


def read_box_table(csv_path: Path) -> dict[str, list[BoxRow]]:
    """Read and validate ``boxes.csv``; return the rows per case id in file order.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: for missing columns, a row with more or fewer fields than the header (see
            :func:`read_csv_rows`) or a bad row (line number, case and fix in the message).
    """
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path} not found. Fix: create it with the header "
            f"'{','.join(REQUIRED_COLUMNS)}[,label][,grade]' (a header-only file means no case has a fracture).")
    header, table = read_csv_rows(csv_path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {', '.join(missing)}; found {header}. Fix: "
                         f"the header must be '{','.join(REQUIRED_COLUMNS)}[,label][,grade]'.")
    rows: dict[str, list[BoxRow]] = {}
    for line, cells in table:
        parsed = _parse_row(dict(zip(header, cells)), f"{csv_path} line {line}")
        rows.setdefault(parsed.case_id, []).append(parsed)
    return rows


def _voxel_box(image: sitk.Image, row: BoxRow, case_id: str, image_path: Path) -> VoxelBox:
    where = f"{row.where}: case {case_id!r} (image {image_path})"
    size = image.GetSize()
    if row.space == "voxel":
        box = VoxelBox(tuple(int(v) for v in row.lo), tuple(int(v) for v in row.hi), row.label, row.grade)
        check_box(box, size, where)
        return box
    try:
        box = world_to_voxel_box(image, row.lo, row.hi, row.label, row.grade)
    except ValueError as e:
        raise ValueError(f"{where}: {e}. Fix: check the coordinates are millimetres of this scan.") from None
    overhang = _overhang_mm(box, size, image.GetSpacing()) if box is not None else 0.0
    if overhang > BOX_OVERHANG_TOLERANCE_MM:
        raise ValueError(f"{where}: world box {row.lo}-{row.hi} mm reaches {overhang:.4g} mm past the image, more "
                         f"than the {BOX_OVERHANG_TOLERANCE_MM:g} mm a box may overhang the scan edge. Fix: check the "
                         f"coordinates are millimetres in the LPS frame SimpleITK reports (RAS coordinates need x "
                         f"and y negated), or use space 'voxel'.")
    clipped = clip_box(box, size) if box is not None else None
    if clipped is not None and overhang > 0:
        print(f"nnunet-fracture: warning: {where}: world box {row.lo}-{row.hi} mm reaches {overhang:.3g} mm past "
              f"the image; clipped to voxels {clipped.lo}-{clipped.hi}", file=sys.stderr)
    if clipped is None:
        corner_lo = image.TransformIndexToPhysicalPoint((0, 0, 0))
        corner_hi = image.TransformIndexToPhysicalPoint(tuple(int(s) - 1 for s in size))
        raise ValueError(
            f"{where}: world box {row.lo}-{row.hi} mm contains no voxel centre of the image (it lies outside "
            f"the image, whose corner voxel centres are at {tuple(round(c, 2) for c in corner_lo)} and "
            f"{tuple(round(c, 2) for c in corner_hi)} mm, or falls between two slices). Fix: check the "
            f"coordinates are millimetres in the LPS frame SimpleITK reports (RAS coordinates need x and y "
            f"negated) or use space 'voxel'.")
    return clipped


def _overhang_mm(box: VoxelBox, size: tuple[int, ...], spacing: tuple[float, ...]) -> float:
    """How far (mm, the largest over the six sides) ``box`` reaches outside an image of ``size`` voxels."""
    below = [max(0, -lo) * sp for lo, sp in zip(box.lo, spacing)]
    above = [max(0, hi - (n - 1)) * sp for hi, n, sp in zip(box.hi, size, spacing)]
    return float(max(below + above))


def _iter_cases(images: dict[str, Path], masks: dict[str, Path], vertebrae: dict[str, Path],
                rows: dict[str, list[BoxRow]]) -> Iterator[CaseRecord]:
    for case_id, image_path in images.items():
        image = read_ct(image_path, case_id)
        boxes = [_voxel_box(image, row, case_id, image_path) for row in rows.get(case_id, [])]
        mask = vert = None
        if case_id in masks:
            mask = check_same_geometry(image, read_image(masks[case_id], "mask", case_id), "mask", case_id,
                                       str(masks[case_id]))
        if case_id in vertebrae:
            vert = check_same_geometry(image, read_image(vertebrae[case_id], "vertebra map", case_id),
                                       "vertebra map", case_id, str(vertebrae[case_id]))
        yield CaseRecord(case_id, image, boxes, mask, vert, source=str(image_path))


def read_generic(input_dir: Path | str) -> Iterator[CaseRecord]:
    """Validate a generic-format folder, then return an iterator yielding its cases one at a time.

    The folder listing and ``boxes.csv`` are checked before this function returns; image contents (a 3D CT
    with finite voxels within float32 range, box inside the image, geometry of masks and vertebra maps) are
    checked as each case is read.

    Args:
        input_dir: the folder holding ``images/``, ``boxes.csv`` and optionally ``masks/`` and ``vertebrae/``.

    Returns:
        An iterator of :class:`CaseRecord` in case-id order.

    Raises:
        FileNotFoundError: the folder, ``images/`` or ``boxes.csv`` is missing.
        ValueError: bad file names, duplicate cases, a bad table row, or a row / mask / vertebra map for a case
            without an image.
    """
    root = Path(input_dir)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir} not found. Fix: put the CTs in {images_dir}/<case_id>.nii.gz "
                                f"(generic input format).")
    images = list_case_files(images_dir)
    if not images:
        raise ValueError(f"{images_dir} holds no image ({', '.join(IMAGE_ENDINGS)}). Fix: add the CTs.")
    extra: dict[str, dict[str, Path]] = {}
    for sub in ("masks", "vertebrae"):
        folder = root / sub
        extra[sub] = list_case_files(folder) if folder.is_dir() else {}
        orphans = sorted(set(extra[sub]) - set(images))
        if orphans:
            raise ValueError(f"case {orphans[0]!r}: {extra[sub][orphans[0]]} has no CT in {images_dir} "
                             f"({len(orphans)} such file(s) in {folder}). Fix: add the CT or remove the file.")
    rows = read_box_table(root / "boxes.csv")
    unknown = [r for case_rows in rows.values() for r in case_rows if r.case_id not in images]
    if unknown:
        r = unknown[0]
        raise ValueError(f"{r.where}: case {r.case_id!r} has a box but no image in {images_dir}. Fix: add "
                         f"images/{r.case_id}.nii.gz or remove its rows ({len(unknown)} row(s) name unknown "
                         f"cases).")
    return _iter_cases(images, extra["masks"], extra["vertebrae"], rows)
