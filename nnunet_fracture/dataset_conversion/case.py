"""The in-memory form every converter produces before a raw dataset is written.

Each input format (generic CSV, VerSe, RSNA-2022, the phantom) is read into a stream of :class:`CaseRecord`
objects; :func:`nnunet_fracture.dataset_conversion.raw_dataset.write_raw_dataset` validates them and writes
one nnU-Net raw dataset. Keeping this the only hand-over point means validation, weak-label modes, per-vertebra
crops and atomic writing exist once, not once per format.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import SimpleITK as sitk

CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class VoxelBox:
    """An axis-aligned box on an image's voxel grid.

    ``lo`` and ``hi`` are ITK/SimpleITK index order (i, j, k) = (x, y, z) and both are inclusive, so a
    single-voxel box has ``lo == hi``. ``label`` is free text (for example the vertebra name, ``"L1"``) and
    ``grade`` an optional Genant grade.
    """

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    label: str = ""
    grade: Optional[int] = None

    def size(self) -> tuple[int, int, int]:
        return tuple(h - l + 1 for l, h in zip(self.lo, self.hi))  # type: ignore[return-value]


@dataclass
class CaseRecord:
    """One case as read from any input format.

    Attributes:
        case_id: letters, digits, ``_`` and ``-`` only (it becomes a file name).
        image: the CT in Hounsfield units.
        boxes: fracture boxes on ``image``'s voxel grid; empty for a fracture-free case.
        mask: optional ground-truth fracture mask on the same grid as ``image`` (evaluation only, or the
            label in ``--weak mask`` mode).
        vertebrae: optional vertebra label map (VerSe numbering) on the same grid as ``image``.
        source: where the case came from (a path), quoted in every error message about it.
    """

    case_id: str
    image: sitk.Image
    boxes: list[VoxelBox] = field(default_factory=list)
    mask: Optional[sitk.Image] = None
    vertebrae: Optional[sitk.Image] = None
    source: str = ""
