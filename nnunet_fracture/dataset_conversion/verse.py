"""Read VerSe 2019/2020 (BIDS layout) plus a fracture-grade table as a stream of CaseRecords.

Layout read (``[ses-*/]`` levels and extra ``_key-value`` parts such as ``_dir-ax`` are allowed)::

    ROOT/rawdata/sub-*/[ses-*/]sub-*[_...]_ct.nii.gz               CT in HU
    ROOT/derivatives/sub-*/[ses-*/]sub-*[_...]_seg-vert_msk.nii.gz  vertebra labels (VerSe numbering)

A CT and its mask are paired by their shared file-name prefix, which is also the case id (``sub-verse004``,
``sub-gl003_dir-ax``). Centroid files (``*_ctd.json``) are not needed and are ignored.

The grade table is a CSV with one row per graded vertebra and the columns ``subject``, ``vertebra`` and
``grade`` (header matched case-insensitively; ``case``/``case_id``/``subject_id`` and ``level``/``vert`` and
``genant``/``genant_grade`` are accepted as spellings, as long as each role is named by exactly one column).
``subject`` is a case id, or the ``sub-xxx`` part shared by all scans of one subject (``sub-`` may be left
out); ``vertebra`` is a VerSe label number or a name (C1-C7, T1-T13, L1-L6, any case); ``grade`` is the
Genant grade 0-3. Every vertebra with ``grade >= min_grade`` becomes one box: the bounding box of its mask
voxels, labelled with the vertebra name and grade. Cases without such rows are fracture-free.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import SimpleITK as sitk

from .box_geometry import label_extents
from .case import CASE_ID_PATTERN, CaseRecord, VoxelBox
from .case_checks import read_ct
from .generic import read_csv_rows
from .vertebra_labels import LABEL_NAMES, parse_vertebra, vertebra_name

log = logging.getLogger(__name__)

CT_SUFFIXES = ("_ct.nii.gz", "_ct.nii")
MASK_SUFFIXES = ("_seg-vert_msk.nii.gz", "_seg-vert_msk.nii")
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "subject": ("subject", "subject_id", "sub", "case", "case_id"),
    "vertebra": ("vertebra", "vert", "level", "vertebra_label"),
    "grade": ("grade", "genant", "genant_grade", "fracture_grade"),
}


@dataclass
class _GradeRow:
    """One row of the grade table, resolved to the cases it applies to."""

    line: int
    subject: str
    label: int
    grade: int
    cases: list[str]


def _prefix(path: Path, suffixes: tuple[str, ...]) -> Optional[str]:
    for suffix in suffixes:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _index(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """Map file-name prefix -> path for every file under ``folder`` ending in one of ``suffixes``."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        prefix = _prefix(path, suffixes)
        if prefix is None or not path.is_file():
            continue
        if prefix in found:
            raise ValueError(f"two {what} files share the prefix {prefix!r}: {found[prefix]} and {path}; "
                             "keep one of them (the prefix is the case id)")
        found[prefix] = path
    return found


def find_verse_pairs(root: Path) -> list[tuple[str, Path, Path]]:
    """List the (case id, CT path, mask path) triples of a VerSe tree, sorted by case id.

    Args:
        root: the VerSe dataset root holding ``rawdata/`` and ``derivatives/``.

    Returns:
        One triple per CT.

    Raises:
        FileNotFoundError: if a folder is missing, no CT is found, or a CT has no vertebra mask.
        ValueError: if a prefix is not a plain case id or two files share a prefix.
    """
    raw, derivatives = root / "rawdata", root / "derivatives"
    for folder in (raw, derivatives):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found: a VerSe root holds rawdata/sub-*/..._ct.nii.gz and "
                                    "derivatives/sub-*/..._seg-vert_msk.nii.gz; pass that root")
    cts = _index(raw, CT_SUFFIXES, "CT")
    if not cts:
        raise FileNotFoundError(f"no *_ct.nii.gz under {raw}; is {root} a VerSe (BIDS) root?")
    masks = _index(derivatives, MASK_SUFFIXES, "vertebra mask")
    pairs = []
    for case_id, ct in sorted(cts.items()):
        if not CASE_ID_PATTERN.match(case_id):
            raise ValueError(f"{ct}: case id {case_id!r} (the file prefix) may hold only letters, digits, '_' "
                             "and '-'; rename the CT and its mask")
        if case_id not in masks:
            raise FileNotFoundError(
                f"case {case_id}: CT {ct} has no vertebra mask; expected {derivatives}/{ct.parent.relative_to(raw)}"
                f"/{case_id}{MASK_SUFFIXES[0]} - add the mask or remove the CT")
        pairs.append((case_id, ct, masks[case_id]))
    for extra in sorted(set(masks) - set(cts)):
        log.warning("vertebra mask %s has no CT in %s; ignored", masks[extra], raw)
    return pairs


def _columns(header: list[str], path: Path) -> dict[str, int]:
    norm = [h.strip().lower().replace(" ", "_").replace("-", "_") for h in header]
    columns = {}
    for role, aliases in COLUMN_ALIASES.items():
        hits = [i for i, name in enumerate(norm) if name in aliases]
        if len(hits) != 1:
            problem = "no column" if not hits else f"several columns ({', '.join(header[i] for i in hits)})"
            raise ValueError(f"{path}: {problem} for '{role}' (accepted names: {', '.join(aliases)}); the grade "
                             f"table needs exactly one each of subject, vertebra, grade - found {header}")
        columns[role] = hits[0]
    return columns


def _parse_grade(text: str, where: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value != int(value) or not 0 <= value <= 3:
        raise ValueError(f"{where}: grade {text!r} is not an integer Genant grade 0-3; fix the grade")
    return int(value)


def _resolve_subject(subject: str, case_ids: list[str]) -> list[str]:
    candidates = [subject] if subject.startswith("sub-") else [subject, f"sub-{subject}"]
    for name in candidates:
        if name in case_ids:
            return [name]
        same_subject = [c for c in case_ids if c.split("_")[0] == name]
        if same_subject:
            return same_subject
    return []


def read_grade_table(path: Path, case_ids: list[str]) -> list[_GradeRow]:
    """Read and check the grade table against the case ids found on disk.

    Args:
        path: the CSV (subject, vertebra, grade).
        case_ids: the case ids of the VerSe tree.

    Returns:
        One resolved row per CSV row.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on missing/ambiguous columns, a row with more or fewer fields than the header, unknown
            subjects or vertebrae, non-integer grades or conflicting duplicate rows; the message names the file
            and line.
    """
    if not path.is_file():
        raise FileNotFoundError(f"grade table {path} not found; pass --grades with a CSV subject,vertebra,grade")
    header, rows = read_csv_rows(path)
    if not header:
        raise ValueError(f"{path} is empty; it needs a header subject,vertebra,grade")
    columns = _columns(header, path)
    resolved: list[_GradeRow] = []
    seen: dict[tuple[str, int], tuple[int, int]] = {}
    for line, row in rows:
        where = f"{path} line {line}"
        subject = row[columns["subject"]].strip()
        cases = _resolve_subject(subject, case_ids)
        if not cases:
            raise ValueError(f"{where}: subject {subject!r} matches no case (cases found: "
                             f"{', '.join(case_ids[:5])}{', ...' if len(case_ids) > 5 else ''}); fix the subject or "
                             "remove the row")
        try:
            label = parse_vertebra(row[columns["vertebra"]])
        except ValueError as err:
            raise ValueError(f"{where}: {err}; fix the vertebra") from None
        grade = _parse_grade(row[columns["grade"]].strip(), where)
        for case_id in cases:
            previous = seen.setdefault((case_id, label), (grade, line))
            if previous[0] != grade:
                raise ValueError(f"{where}: case {case_id} vertebra {vertebra_name(label)} has grade {grade} here "
                                 f"but {previous[0]} on line {previous[1]}; keep one grade per vertebra")
        resolved.append(_GradeRow(line, subject, label, grade, cases))
    return resolved


def _read_vertebra_mask(path: Path, ct: sitk.Image, case_id: str) -> sitk.Image:
    """Read a vertebra mask, check it lies on the CT grid, and return it as UInt8 with the CT's geometry."""
    mask = sitk.ReadImage(str(path))
    if mask.GetDimension() != 3 or mask.GetSize() != ct.GetSize():
        raise ValueError(f"case {case_id}: vertebra mask {path} has size {mask.GetSize()} but the CT has "
                         f"{ct.GetSize()}; the mask must be on the CT's voxel grid")
    spacing = np.array(ct.GetSpacing())
    if (not np.allclose(mask.GetSpacing(), spacing, rtol=1e-3, atol=0)
            or not np.allclose(mask.GetDirection(), ct.GetDirection(), atol=1e-3)
            or np.max(np.abs(np.subtract(mask.GetOrigin(), ct.GetOrigin()))) > 0.1 * spacing.min()):
        raise ValueError(f"case {case_id}: vertebra mask {path} is not on the CT's voxel grid (origin "
                         f"{mask.GetOrigin()} vs {ct.GetOrigin()}, spacing {mask.GetSpacing()} vs {ct.GetSpacing()}, "
                         "direction may differ); resample the mask onto the CT")
    values = sitk.GetArrayViewFromImage(mask)
    if values.size and (values.min() < 0 or values.max() > 255 or not np.array_equal(values, np.round(values))):
        raise ValueError(f"case {case_id}: vertebra mask {path} holds values that are not labels 0-255")
    labels = sitk.Cast(mask, sitk.sitkUInt8)
    labels.CopyInformation(ct)
    return labels


def read_verse(root: Path, grades_csv: Path, min_grade: int = 1) -> Iterator[CaseRecord]:
    """Yield one CaseRecord per VerSe CT, one case at a time.

    Everything that can be checked without reading images (pairing, case ids, the grade table) is checked
    before the first case is yielded.

    Args:
        root: the VerSe dataset root (``rawdata/``, ``derivatives/``).
        grades_csv: the grade table (subject, vertebra, grade).
        min_grade: smallest Genant grade that counts as a fracture (1-3).

    Yields:
        CaseRecord with the CT, one box per fractured vertebra (label = vertebra name, grade) and the
        vertebra mask as ``vertebrae``; ``source`` is the CT path.

    Raises:
        FileNotFoundError: missing folders, files, or a CT without mask.
        ValueError: bad grade table (see :func:`read_grade_table`), a CT that is not 3D or holds NaN, infinite
            or beyond-float32 voxels, a fractured vertebra absent from its mask, or a mask that is not on its
            CT's grid.
    """
    root, grades_csv = Path(root), Path(grades_csv)
    if not 1 <= int(min_grade) <= 3:
        raise ValueError(f"min_grade {min_grade} must be 1, 2 or 3 (Genant grade 0 means not fractured)")
    pairs = find_verse_pairs(root)
    case_ids = [case_id for case_id, _, _ in pairs]
    rows = [row for row in read_grade_table(grades_csv, case_ids) if row.grade >= min_grade]
    rows_by_case: dict[str, list[_GradeRow]] = {}
    for row in rows:
        for case_id in row.cases:
            rows_by_case.setdefault(case_id, []).append(row)
    order = {case_id: i for i, case_id in enumerate(case_ids)}
    last_case = {id(row): max(row.cases, key=order.__getitem__) for row in rows}
    found: set[int] = set()

    for case_id, ct_path, mask_path in pairs:
        image = read_ct(ct_path, case_id)
        vertebrae = _read_vertebra_mask(mask_path, image, case_id)
        extents = label_extents(vertebrae)
        boxes: dict[int, VoxelBox] = {}
        for row in rows_by_case.get(case_id, []):
            if row.label in extents:
                found.add(id(row))
                lo, hi = extents[row.label]
                boxes[row.label] = VoxelBox(lo, hi, label=vertebra_name(row.label), grade=row.grade)
        for row in rows_by_case.get(case_id, []):
            if last_case[id(row)] == case_id and id(row) not in found:
                present = ", ".join(f"{vertebra_name(v)}={v}" if v in LABEL_NAMES else str(v) for v in sorted(extents))
                scans = f"mask {mask_path}" if len(row.cases) == 1 else f"masks of {', '.join(row.cases)}"
                raise ValueError(
                    f"{grades_csv} line {row.line}: vertebra {vertebra_name(row.label)} (label {row.label}) of "
                    f"{row.subject} has grade {row.grade} but is absent from the {scans} (labels present: "
                    f"{present or 'none'}); fix the grade row or the mask")
        yield CaseRecord(case_id=case_id, image=image, boxes=[boxes[k] for k in sorted(boxes)],
                         vertebrae=vertebrae, source=str(ct_path))

