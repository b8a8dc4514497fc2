"""World <-> voxel conversion of fracture boxes, box validation and box rasterisation.

Conventions (shared by every converter):

* A **voxel box** (:class:`~nnunet_fracture.dataset_conversion.case.VoxelBox`) holds inclusive ITK indices
  ``(i, j, k)``; it stands for the voxel *centres* ``lo <= index <= hi``.
* A **world box** is a pair ``(world_min, world_max)`` of points in millimetres in the image's physical LPS
  frame as SimpleITK reports it (``image.TransformIndexToPhysicalPoint``), axis-aligned in that frame.
* Physical point of a (continuous) index ``c``: ``p = origin + D @ diag(spacing) @ c`` with ``D`` the image
  direction matrix. This module evaluates that affine map with numpy, so it is exact for any direction,
  including oblique ones and anisotropic spacing.

**World -> voxel** (:func:`world_to_voxel_box`): the 8 corners of the world box are mapped to continuous
indices; per index axis the smallest and largest of those values, ``c_min`` and ``c_max``, are rounded
*inward*: ``lo = ceil(c_min - tol)``, ``hi = floor(c_max + tol)`` with ``tol`` (default ``1e-3``) in voxel
units, so a voxel centre lying on the box surface up to floating-point error still counts as inside. When the
direction is a signed permutation (axis-aligned grid) the result is exactly the set of voxel centres inside the
world box. For an oblique direction it is the smallest voxel box containing every voxel centre inside the world
box (the index-space bounding box of the world box), so it may also hold centres just outside the world box.

**Voxel -> world** (:func:`voxel_to_world_box`): the physical bounding box of the centres of the voxel box's 8
corner voxels. Hence voxel -> world -> voxel is the identity on axis-aligned grids and returns a box containing
the original on oblique ones.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.case import VoxelBox

DEFAULT_TOLERANCE = 1e-3
"""Slack, in voxel units, when deciding whether a voxel centre lies inside a world box."""
MAX_INDEX = 1e9  # a world box mapped further out than this many voxels is refused (int64 indices stay exact)


def index_to_physical(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(origin, matrix)`` with ``physical = origin + matrix @ index`` for a 3D image.

    Args:
        image: a 3D SimpleITK image.

    Returns:
        ``origin`` (shape 3) and ``matrix = D @ diag(spacing)`` (shape 3x3), both float64.

    Raises:
        ValueError: if the image is not 3D.
    """
    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    return np.asarray(image.GetOrigin(), dtype=np.float64), direction * spacing[None, :]


def is_axis_aligned(image: sitk.Image, tol: float = 1e-6) -> bool:
    """Whether the image's direction matrix is a signed permutation (every row and column has one +-1)."""
    direction = np.abs(np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3))
    ones = np.isclose(direction, 1.0, atol=tol)
    zeros = np.isclose(direction, 0.0, atol=tol)
    return bool(np.all(ones | zeros) and np.all(ones.sum(0) == 1) and np.all(ones.sum(1) == 1))


def _corners(lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
    """The 8 corners of the axis-aligned box ``[lo, hi]`` as an (8, 3) array."""
    lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    sel = np.array([[(n >> a) & 1 for a in range(3)] for n in range(8)], dtype=bool)
    return np.where(sel, hi_a[None, :], lo_a[None, :])


def world_to_continuous_index(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Map physical points (N, 3) to continuous ITK indices (N, 3)."""
    origin, matrix = index_to_physical(image)
    return np.linalg.solve(matrix, (np.atleast_2d(points) - origin).T).T


def world_to_voxel_box(image: sitk.Image, world_min: Sequence[float], world_max: Sequence[float],
                       label: str = "", grade: Optional[int] = None,
                       tol: float = DEFAULT_TOLERANCE) -> Optional[VoxelBox]:
    """Convert a world box (mm, LPS) into the voxel box of the voxel centres inside it (see module doc).

    The result is *not* clipped to the image; use :func:`clip_box` for that.

    Args:
        image: the image whose grid the box is expressed on.
        world_min: smallest corner ``(x, y, z)`` in mm.
        world_max: largest corner ``(x, y, z)`` in mm; must be >= ``world_min`` on every axis.
        label: free-text label copied to the box.
        grade: optional Genant grade copied to the box.
        tol: inward-rounding slack in voxel units.

    Returns:
        The voxel box, or ``None`` if no voxel centre (of the infinite grid) lies inside the world box,
        e.g. a box thinner than one slice that falls between two slice centres.

    Raises:
        ValueError: if ``world_min > world_max`` on some axis or a coordinate is not finite.
    """
    wmin, wmax = np.asarray(world_min, dtype=np.float64), np.asarray(world_max, dtype=np.float64)
    if wmin.shape != (3,) or wmax.shape != (3,) or not (np.all(np.isfinite(wmin)) and np.all(np.isfinite(wmax))):
        raise ValueError(f"a world box needs 3 finite coordinates per corner, got {list(wmin)} and {list(wmax)}")
    if np.any(wmin > wmax):
        raise ValueError(f"world box min {wmin.tolist()} is larger than max {wmax.tolist()} on some axis")
    idx = world_to_continuous_index(image, _corners(wmin, wmax))
    if np.any(np.abs(idx) > MAX_INDEX):
        raise ValueError(f"world box {wmin.tolist()}-{wmax.tolist()} mm lies more than {MAX_INDEX:.0e} voxels from "
                         f"the image; its coordinates cannot be millimetres of this scan")
    lo = np.ceil(idx.min(axis=0) - tol).astype(np.int64)
    hi = np.floor(idx.max(axis=0) + tol).astype(np.int64)
    if np.any(lo > hi):
        return None
    return VoxelBox(tuple(int(v) for v in lo), tuple(int(v) for v in hi), label, grade)


def voxel_to_world_box(image: sitk.Image, box: VoxelBox) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The physical bounding box ``(world_min, world_max)`` in mm of the centres of ``box``'s corner voxels."""
    origin, matrix = index_to_physical(image)
    points = origin + _corners(box.lo, box.hi) @ matrix.T
    return tuple(float(v) for v in points.min(axis=0)), tuple(float(v) for v in points.max(axis=0))


def box_problem(box: VoxelBox, size: Sequence[int]) -> Optional[str]:
    """Describe what is wrong with ``box`` on an image of ``size`` (i, j, k), or return ``None`` if valid.

    A valid box has ``lo <= hi`` on every axis and lies entirely inside the image: ``0 <= lo`` and
    ``hi < size``.
    """
    lo, hi = np.asarray(box.lo), np.asarray(box.hi)
    if lo.shape != (3,) or hi.shape != (3,):
        return f"box needs 3 indices per corner, got lo={box.lo} hi={box.hi}"
    if np.any(lo > hi):
        return f"box min {tuple(box.lo)} is larger than max {tuple(box.hi)} on some axis"
    if np.any(lo < 0) or np.any(hi >= np.asarray(size)):
        return (f"box lo={tuple(box.lo)} hi={tuple(box.hi)} is not inside the image, whose indices run from "
                f"(0, 0, 0) to {tuple(int(s) - 1 for s in size)}")
    return None


def check_box(box: VoxelBox, size: Sequence[int], where: str) -> None:
    """Raise ``ValueError`` naming ``where`` (case and file) if :func:`box_problem` finds a problem."""
    problem = box_problem(box, size)
    if problem:
        raise ValueError(f"{where}: {problem}. Fix: correct the box coordinates (voxel boxes are inclusive "
                         f"ITK indices i, j, k starting at 0).")


def clip_box(box: VoxelBox, size: Sequence[int], offset: Sequence[int] = (0, 0, 0)) -> Optional[VoxelBox]:
    """Shift ``box`` by ``-offset`` and clip it to ``[0, size - 1]``; ``None`` if nothing is left.

    Args:
        box: a box with ``lo <= hi``.
        size: image size (i, j, k) to clip to.
        offset: start index of a crop; the box is re-expressed relative to it.
    """
    lo = np.maximum(np.asarray(box.lo) - np.asarray(offset), 0)
    hi = np.minimum(np.asarray(box.hi) - np.asarray(offset), np.asarray(size) - 1)
    if np.any(lo > hi):
        return None
    return VoxelBox(tuple(int(v) for v in lo), tuple(int(v) for v in hi), box.label, box.grade)


#: Box numbers are stored as uint8 label values (nnU-Net keeps segmentations as int8/int16).
MAX_BOXES_PER_CASE = 255


def rasterise_boxes(boxes: Iterable[VoxelBox], size: Sequence[int], mode: str = "box") -> np.ndarray:
    """Paint boxes into a box-number map: 0 outside every box, ``n`` inside the ``n``-th box (1-based).

    Args:
        boxes: valid boxes (see :func:`box_problem`) on a grid of ``size``.
        size: image size in ITK order (i, j, k).
        mode: ``"box"`` paints the box itself; ``"slice"`` paints every voxel of the slices ``k`` in
            ``[lo_k, hi_k]`` (whole axial slices for an axially acquired CT).

    Returns:
        uint8 array in SimpleITK's array order ``[k, j, i]``; where boxes overlap, the later box wins.

    Raises:
        ValueError: for an unknown mode, an invalid box or more than :data:`MAX_BOXES_PER_CASE` boxes.
    """
    if mode not in ("box", "slice"):
        raise ValueError(f"unknown rasterisation mode {mode!r}; expected 'box' or 'slice'")
    boxes = list(boxes)
    if len(boxes) > MAX_BOXES_PER_CASE:
        raise ValueError(f"{len(boxes)} boxes in one case; at most {MAX_BOXES_PER_CASE} fit a uint8 box-number "
                         f"map. Fix: merge overlapping boxes or split the case.")
    shape = tuple(int(s) for s in size)[::-1]
    numbers = np.zeros(shape, dtype=np.uint8)
    for box_id, box in enumerate(boxes, start=1):
        problem = box_problem(box, size)
        if problem:
            raise ValueError(problem)
        (i0, j0, k0), (i1, j1, k1) = box.lo, box.hi
        if mode == "box":
            region = (slice(k0, k1 + 1), slice(j0, j1 + 1), slice(i0, i1 + 1))
        else:
            region = (slice(k0, k1 + 1), slice(None), slice(None))
        numbers[region] = box_id
    return numbers


def label_extents(labels: sitk.Image) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Inclusive ITK-index (i, j, k) bounding box ``(lo, hi)`` of every non-zero label of an integer label map."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    extents = {}
    for label in stats.GetLabels():
        x, y, z, sx, sy, sz = stats.GetBoundingBox(label)
        extents[int(label)] = ((x, y, z), (x + sx - 1, y + sy - 1, z + sz - 1))
    return extents
