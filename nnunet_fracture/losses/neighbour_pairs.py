"""Neighbour pairs inside boxes, shared by the pairwise box terms (:mod:`~nnunet_fracture.losses.box_affinity`,
:mod:`~nnunet_fracture.losses.box_smoothness`): the offsets of a (dilated) 3x3(x3) neighbourhood, the slices that
pair every voxel with its neighbour at one offset (:func:`pairs_in` for all offsets at once), the region around
the boxes that holds every pair, and the terms' input checks."""
from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import torch

from nnunet_fracture.losses.bag_aggregation import check_fracture_logits


def half_neighbourhood(dilation: Sequence[int]) -> list[tuple[int, ...]]:
    """The offsets of a 3x3(x3) neighbourhood spread by ``dilation`` voxels per axis, one of each ``+-`` pair
    (13 in 3D, 4 in 2D): a pair ``(i, i + o)`` is the same pair as ``(i + o, i)``."""
    offsets = []
    for step in itertools.product((-1, 0, 1), repeat=len(dilation)):
        if any(step) and next(s for s in step if s) > 0:
            offsets.append(tuple(s * d for s, d in zip(step, dilation)))
    return offsets


def pair_slices(offset: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Spatial slices ``(a, b)`` such that ``x[a]`` and ``x[b]`` hold the two voxels of every pair ``(i, i + offset)``
    that lies inside an array (for example offset ``(1,)``: ``a = 0:-1``, ``b = 1:``)."""
    first, second = [], []
    for o in offset:
        first.append(slice(0, -o) if o > 0 else slice(-o, None))
        second.append(slice(o, None) if o > 0 else slice(0, o if o < 0 else None))
    return tuple(first), tuple(second)


def boxes_region(inside: torch.Tensor, reach: Sequence[int]) -> tuple[slice, ...]:
    """The ``(B, C, *spatial)`` index of the bounding region of the ``True`` voxels of ``inside`` (``*spatial``,
    not empty), grown by ``reach`` voxels per axis and clipped to the array: every pair with a voxel inside lies
    in it when ``reach`` is the neighbourhood's spread (0 when both voxels must be inside)."""
    corner = torch.nonzero(inside)
    return (slice(None), slice(None)) + tuple(
        slice(max(int(lo) - r, 0), int(hi) + r + 1)
        for lo, hi, r in zip(corner.min(dim=0).values, corner.max(dim=0).values, reach))


def check_pair_inputs(logits: torch.Tensor, dilation: Sequence[int], **maps: torch.Tensor) -> None:
    """Check the inputs of a pairwise box term: one fracture channel, every map of ``maps`` (keyword: its name)
    shaped like ``logits``, and one dilation per spatial axis.

    Raises:
        ValueError: naming the map and both shapes, or the dilation and the logits' shape.
    """
    check_fracture_logits(logits)
    for name, other in maps.items():
        if tuple(other.shape) != tuple(logits.shape):
            raise ValueError(f"{name} shape {tuple(other.shape)} differs from logits shape {tuple(logits.shape)}; "
                             f"all must be (B, 1, *spatial)")
    if len(dilation) != logits.ndim - 2:
        raise ValueError(f"dilation has {len(dilation)} entries but logits {tuple(logits.shape)} has "
                         f"{logits.ndim - 2} spatial axes")


def pairs_in(offsets: Sequence[Sequence[int]], spatial_shape: Sequence[int]
             ) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """``(a, b)`` indices of ``(B, C, *spatial)`` arrays pairing every voxel with its neighbour, one per offset of
    ``offsets`` that fits into ``spatial_shape`` (offsets as long as an axis or longer are left out)."""
    for offset in offsets:
        if any(abs(o) >= s for o, s in zip(offset, spatial_shape)):
            continue
        a, b = pair_slices(offset)
        yield (slice(None), slice(None)) + a, (slice(None), slice(None)) + b
