"""A vertebral fracture lies in its own vertebra: pseudo-masks clipped to the boxed vertebra's interior.

A weak model trained on boxes learns *where* a fracture is, not where its annotated extent stops: on the quality
bench its pseudo-masks of wedge and compression fractures also cover the endplate's cortical shell next to the
condensation band and spill over into the disc. Nothing in a box says otherwise - the cortex and the band cross
the same planes of the box - but a vertebra map does:

- every box names its vertebra (``label`` in ``boxes.json``: ``"L1"`` or a VerSe number), and the raw dataset's
  ``vertebraeTr/<case>`` holds the vertebra label map (VerSe numbering) written by ``nnunet-fracture convert``;
- a box's mask keeps only voxels of that vertebra whose distance to the nearest voxel outside it (centre to
  centre, in mm on the image's spacing) exceeds ``shell_mm``. ``shell_mm = 0`` clips to the vertebra only; one
  voxel's spacing (e.g. 1.5) leaves out its outermost voxel layer, the cortical shell on a CT of that
  resolution.

Whether the shell belongs to a fracture is an annotation convention: the phantom's ground truth marks the band
inside the shell (and a cleft through it), as a reader outlines the sclerotic band. Choose ``shell_mm`` after
your annotators' convention; 0 when they include the cortex. The image border is not the vertebra's outside, so
a vertebra cut by the field of view keeps its voxels there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import distance_transform_edt

from nnunet_fracture.dataset_conversion.source_dataset import SourceDataset
from nnunet_fracture.dataset_conversion.vertebra_labels import parse_vertebra


def check_shell_mm(shell_mm: float) -> float:
    """``shell_mm`` as a float, checked: a finite number >= 0 (mm).

    Raises:
        ValueError: otherwise.
    """
    if isinstance(shell_mm, bool) or not isinstance(shell_mm, (int, float)) or not math.isfinite(shell_mm) \
            or shell_mm < 0:
        raise ValueError(f"--inside-vertebra must be a shell thickness in mm >= 0 (0: the whole vertebra), "
                         f"got {shell_mm!r}")
    return float(shell_mm)


def box_vertebra(label: str, boxes_file: Path, case: str, box_id: int) -> int:
    """The VerSe label number of the vertebra a box names.

    Raises:
        ValueError: if the box's label is not a vertebra (naming the file, case, box and fix).
    """
    try:
        return parse_vertebra(label)
    except ValueError:
        raise ValueError(f"{boxes_file}, case {case}, box {box_id}: label {label!r} is not a vertebra (L1, T12, "
                         f"or a VerSe number), so its vertebra is unknown. Fix: name the fractured vertebra in the "
                         f"boxes' label column, or leave --inside-vertebra out.") from None


def check_vertebra_maps(source: SourceDataset, cases: Sequence[str]) -> None:
    """Before anything is written: every case has a vertebra map and every box names a vertebra.

    Raises:
        FileNotFoundError: a case without ``vertebraeTr/<case>`` (naming the file, the case and the fix).
        ValueError: a box whose label is not a vertebra (:func:`box_vertebra`).
    """
    for case in cases:
        path = source.vertebra_file(case)
        if not path.is_file():
            raise FileNotFoundError(f"case {case}: no vertebra map {path}, which --inside-vertebra needs. Fix: "
                                    f"convert the dataset with its vertebra masks (VerSe, RSNA segmentations, the "
                                    f"phantom, or vertebrae/ for the generic format), or leave --inside-vertebra out.")
        for n, entry in enumerate(source.boxes[case], start=1):
            box_vertebra(str(entry.get("label", "")), source.boxes_file, case, n)


def read_vertebra_map(source: SourceDataset, case: str, grid: sitk.Image) -> np.ndarray:
    """The case's vertebra label map as an array (k, j, i), checked to be on the grid of the case's image.

    Raises:
        ValueError: if its size differs from the image's.
    """
    path = source.vertebra_file(case)
    image = sitk.ReadImage(str(path))
    if image.GetSize() != grid.GetSize():
        raise ValueError(f"case {case}: vertebra map {path} has size {image.GetSize()}, its image "
                         f"{grid.GetSize()}. Fix: resample the vertebra map onto the CT (nearest neighbour) and "
                         f"convert again.")
    return sitk.GetArrayFromImage(image)


def vertebra_interior(vertebrae: np.ndarray, label: int, spacing: Sequence[float], shell_mm: float) -> np.ndarray:
    """Voxels of vertebra ``label`` lying more than ``shell_mm`` inside it (bool, the shape of ``vertebrae``).

    Args:
        vertebrae: the case's vertebra label map (integer, VerSe numbering).
        label: the vertebra's label number.
        spacing: voxel spacing in the array's axis order (mm).
        shell_mm: thickness left out at the vertebra's surface: a voxel is kept if its centre lies more than this
            far from the centre of the nearest voxel outside the vertebra (0: every voxel of the vertebra).

    Raises:
        ValueError: if ``spacing`` does not match the map's dimensions or ``shell_mm`` is out of range.
    """
    shell_mm = check_shell_mm(shell_mm)
    if len(spacing) != vertebrae.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for a {vertebrae.ndim}-D vertebra map")
    own = vertebrae == label
    if shell_mm == 0 or not own.any():
        return own
    interior = np.zeros(own.shape, dtype=bool)
    # the distance transform of the vertebra's bounding box grown by one voxel (outside it every voxel is not
    # the vertebra; at the image border the crop stops, so the border does not count as outside)
    where = np.nonzero(own)
    crop = tuple(slice(max(int(w.min()) - 1, 0), int(w.max()) + 2) for w in where)
    if own[crop].all():  # the vertebra fills the image: no voxel outside it
        interior[crop] = True
        return interior
    depth = distance_transform_edt(own[crop], sampling=tuple(float(s) for s in spacing))
    interior[crop] = depth > shell_mm + 1e-6  # a voxel exactly shell_mm deep goes, whatever the rounding
    return interior


@dataclass
class CaseVertebrae:
    """One case's vertebra map, answering each box with its vertebra's interior (computed once per vertebra)."""

    vertebrae: np.ndarray
    spacing: tuple[float, ...]
    shell_mm: float
    _interiors: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def interior(self, label: str | int) -> np.ndarray:
        """:func:`vertebra_interior` of the vertebra named ``label`` (a name such as ``"L1"`` or a VerSe number)."""
        number = parse_vertebra(label)
        if number not in self._interiors:
            self._interiors[number] = vertebra_interior(self.vertebrae, number, self.spacing, self.shell_mm)
        return self._interiors[number]
