"""Map a volume from one voxel grid onto another by physical position: predictions on reoriented copies go home.

``nnunet-fracture reorient`` permutes a dataset's index axes and keeps every voxel's physical position
(:mod:`nnunet_fracture.triplanar.reoriented_copies`). nnU-Net writes its predictions on the grid of the image it
was given, so a coronal model's probabilities lie on the coronal copy's grid, and ``<case>.nii.gz`` next to the
``.npz`` carries that grid. Mapping them back onto the source grid needs no interpolation at all:

With ``physical = origin + D diag(spacing) index`` for both grids, a source index ``n_s`` lands on the target
index ``n_t = A n_s + b`` with ``A = M_t^-1 M_s`` and ``b = M_t^-1 (o_s - o_t)`` (``M = D diag(spacing)``). When ``A``
is a signed permutation matrix and ``b`` integral (up to :data:`TOLERANCE_VOXELS` over the whole grid: header
rounding), the target array is a transpose, flips and a crop of the source array - :class:`IndexMapping`, exact to
the bit. That covers reoriented copies (a pure permutation), flipped orientations and crops, provided the source
covers every target voxel.

Anything else (other spacing, oblique relative to each other, partial coverage) is not an index mapping. Then
:func:`map_to_grid` refuses unless resampling is allowed, in which case ``sitk.Resample`` (linear by default)
interpolates onto the target grid, and target voxels whose centres fall outside the source grid are an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk

from nnunet_fracture.io.reference_grid import array_to_image

#: Largest deviation from an exact index correspondence, in target voxels, anywhere on the grid (header rounding).
TOLERANCE_VOXELS = 1e-3

INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}


class GridMappingError(ValueError):
    """The source grid cannot be mapped onto the target grid (the message says why)."""


def _affine(grid: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    if grid.GetDimension() != 3:
        raise GridMappingError(f"expected a 3D image, got {grid.GetDimension()}D")
    direction = np.asarray(grid.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(grid.GetSpacing(), dtype=np.float64)
    return np.asarray(grid.GetOrigin(), dtype=np.float64), direction * spacing[None, :]


@dataclass(frozen=True)
class IndexMapping:
    """Target ITK axis ``t`` is source ITK axis ``source_axis[t]``, read backwards where ``flip[t]``, starting at
    source index ``start[t]`` (along that source axis): ``n_s[source_axis[t]] = start[t] + (-1 if flip[t] else 1) *
    n_t[t]``."""

    source_axis: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    start: tuple[int, int, int]
    target_size: tuple[int, int, int]

    @property
    def is_identity(self) -> bool:
        return self.source_axis == (0, 1, 2) and not any(self.flip) and self.start == (0, 0, 0)

    def describe(self) -> str:
        if self.is_identity:
            return "identical grids"
        axes = ", ".join(f"{'-' if f else ''}{'ijk'[a]}" for a, f in zip(self.source_axis, self.flip))
        crop = "" if self.start == (0, 0, 0) and not any(self.flip) else f", starting at source index {self.start}"
        return f"exact index permutation: target (i, j, k) = source ({axes}){crop}"

    def apply(self, array: np.ndarray, copy: bool = True) -> np.ndarray:
        """Source array in SimpleITK order ``[k, j, i]`` -> target array ``[k, j, i]``: a contiguous copy, or with
        ``copy=False`` a strided view of ``array`` (no extra memory)."""
        view = np.asarray(array).transpose(2, 1, 0)  # ITK order (i, j, k)
        view = view.transpose(self.source_axis)
        region = []
        for t in range(3):
            n, s = self.target_size[t], self.start[t]
            if self.flip[t]:
                region.append(slice(s, s - n if s - n >= 0 else None, -1))
            else:
                region.append(slice(s, s + n))
        out = view[tuple(region)].transpose(2, 1, 0)
        return np.ascontiguousarray(out) if copy else out


def index_mapping(source: sitk.Image, target: sitk.Image) -> Optional[IndexMapping]:
    """The exact index correspondence from ``source``'s grid onto ``target``'s, or ``None`` (module docstring).

    ``None`` also when the source does not cover every target voxel.
    """
    o_s, m_s = _affine(source)
    o_t, m_t = _affine(target)
    try:
        a = np.linalg.solve(m_t, m_s)
        b = np.linalg.solve(m_t, o_s - o_t)
    except np.linalg.LinAlgError:
        return None
    rounded = np.round(a)
    if not (np.all(np.isin(rounded, (-1.0, 0.0, 1.0))) and np.all(np.abs(rounded).sum(0) == 1)
            and np.all(np.abs(rounded).sum(1) == 1)):
        return None
    size_s = np.asarray(source.GetSize(), dtype=np.int64)
    size_t = np.asarray(target.GetSize(), dtype=np.int64)
    # deviation of the true affine map from the rounded one, at the worst source corner, plus the offset's
    if np.max(np.abs(a - rounded) @ (size_s - 1) + np.abs(b - np.round(b))) > TOLERANCE_VOXELS:
        return None
    b_int = np.round(b).astype(np.int64)
    source_axis, flip, start = [], [], []
    for t in range(3):
        axis = int(np.flatnonzero(rounded[t])[0])
        sign = int(rounded[t, axis])
        # n_t = sign * n_s + b  =>  n_s = sign * (n_t - b)
        first, last = sign * (0 - b_int[t]), sign * (size_t[t] - 1 - b_int[t])
        if min(first, last) < 0 or max(first, last) > size_s[axis] - 1:
            return None
        source_axis.append(axis)
        flip.append(sign < 0)
        start.append(int(first))
    return IndexMapping(tuple(source_axis), tuple(flip), tuple(start), tuple(int(v) for v in size_t))


def _describe(grid: sitk.Image) -> str:
    return (f"size {tuple(grid.GetSize())}, spacing {tuple(round(v, 6) for v in grid.GetSpacing())}, origin "
            f"{tuple(round(v, 4) for v in grid.GetOrigin())}, direction "
            f"{tuple(round(v, 4) for v in grid.GetDirection())}")


def map_to_grid(array: np.ndarray, source_grid: sitk.Image, target_grid: sitk.Image,
                resample: Optional[str] = None, copy: bool = True) -> tuple[np.ndarray, str]:
    """Values of ``array`` (on ``source_grid``, order ``[k, j, i]``) at the voxels of ``target_grid``.

    Args:
        array: the volume, shape ``source_grid.GetSize()[::-1]``.
        source_grid: image whose geometry the array has (pixels are not read).
        target_grid: image whose geometry the result gets.
        resample: ``None`` (exact index mappings only), ``"linear"`` or ``"nearest"``: interpolate with
            ``sitk.Resample`` when no exact mapping exists.
        copy: with ``False`` an exact mapping returns a strided view of ``array`` instead of a contiguous copy.

    Returns:
        ``(mapped, how)``: the target array (float32 if resampled, else ``array``'s dtype) and a description of
        the mapping used.

    Raises:
        GridMappingError: wrong array shape; no exact mapping and ``resample`` is None; or target voxels outside
            the source grid when resampling.
    """
    expected = tuple(int(s) for s in source_grid.GetSize())[::-1]
    if tuple(np.shape(array)) != expected:
        raise GridMappingError(f"the array has shape {tuple(np.shape(array))} but its grid has size "
                               f"{tuple(source_grid.GetSize())} (array shape {expected})")
    mapping = index_mapping(source_grid, target_grid)
    if mapping is not None:
        return mapping.apply(array, copy=copy), mapping.describe()
    description = f"{_describe(source_grid)} vs the target's {_describe(target_grid)}"
    if resample is None:
        raise GridMappingError(f"the grids are not an axis permutation/flip of each other covering the target "
                               f"({description})")
    if resample not in INTERPOLATORS:
        raise ValueError(f"unknown interpolation {resample!r}; expected one of {', '.join(INTERPOLATORS)}")
    source = array_to_image(np.asarray(array, dtype=np.float32), source_grid)
    mapped = sitk.Resample(source, target_grid, sitk.Transform(), INTERPOLATORS[resample], float("nan"),
                           sitk.sitkFloat32)
    out = sitk.GetArrayFromImage(mapped)
    outside = int(np.isnan(out).sum())
    if outside:
        raise GridMappingError(f"{outside} of {out.size} target voxels lie outside the source grid ({description})")
    return out, f"resampled ({resample} interpolation)"
