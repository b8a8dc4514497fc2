"""Plane bags: the tightness prior of a 3D box as multiple-instance bags.

A radiologist's box is tight up to an annotation margin: every axis-aligned plane through the box *core* (the box
shrunk by that margin on each side) meets the fracture, if the fracture is one connected object. So for each
axis ``a`` and each index ``k`` of the core along ``a``, the voxels of the box whose coordinate on ``a`` is ``k``
form a positive bag (Wang & Xia, "Bounding box tightness prior for weakly supervised image segmentation",
MICCAI 2021, whose 2D bags are the lines crossing a box; in 3D a line need not meet a connected object, a plane
must). The margin band is left out of the bags altogether: a bag is the *core's* cross-section, the voxels of
the box whose coordinate on ``a`` is ``k`` and whose other coordinates lie in the core too. Whole-box
cross-sections were tried first and failed on the bench phantom: every one of them holds the vertebra's cortical
rim, which lies in the margin just outside the fracture, and the network satisfied the bags by painting the
cortex of every vertebra (fracture voxels P 0.005, in-box Dice 0.004, 120 epochs).

A training patch may cut a box. A side of a box that touches the patch border is treated as cut: the planes of
the *other* axes are dropped, because a cut plane may miss the fracture, while the planes along the cut axis
itself stay valid. A cut side is shrunk by the margin like any other (the box may also end exactly at the border,
and then its outer planes are margin). Margins are rounded *up* to whole voxels (at least 1 when above 0), so
the low-resolution deep-supervision scales keep the rim out too.

Slice ranges (``axes``): a slice-level annotation says which slices hold the fracture, not where in them, and
its "box" spans whole slices. Its bags are the planes along the slice axis alone (the slices of the range's core),
each a whole slice of the patch: the other axes get no planes, are not shrunk by the margin, and a patch border
across them is not held against a slice bag - it always cuts a whole slice, so dropping the bags there would drop
them all. The price is that a patch which holds the range's slices but not the fracture in them still asks them
for fracture (the same noise as any one-bag-per-range loss has).

Two limits: where boxes overlap, the box-number map holds the later box, so a plane of the earlier one lacks
the shared voxels; and the bags assume axis-aligned boxes, so the weak-box trainer turns rotation augmentation
off while the tightness term is on (:class:`~nnunet_fracture.training.box_priors.BoxPriorSettings`).
:func:`box_extents` also says which boxes are whole inside the patch, which the size bounds of
:mod:`nnunet_fracture.losses.box_size` need.

Bags are found from the box-number map alone (see the data contract in
:mod:`nnunet_fracture.losses.bag_aggregation`), once per deep-supervision scale, without a Python loop over
boxes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Sequence

import torch

from nnunet_fracture.losses.bag_aggregation import BoxBags


@dataclass(frozen=True)
class BoxExtents:
    """Where each box bag lies in the patch.

    Attributes:
        lo, hi: long ``(K, D)``, the first and last index of bag ``k`` along spatial axis ``d`` (inclusive).
        cut_lo, cut_hi: bool ``(K, D)``, the box touches the patch's lower / upper border on that axis, so it may
            go on beyond the patch.
    """

    lo: torch.Tensor
    hi: torch.Tensor
    cut_lo: torch.Tensor
    cut_hi: torch.Tensor

    @property
    def whole(self) -> torch.Tensor:
        """bool ``(K,)``: the box is cut on no side, so the patch holds all of it."""
        return ~(self.cut_lo | self.cut_hi).any(dim=1)


@dataclass(frozen=True)
class PlaneBags:
    """The plane bags of a batch.

    Attributes:
        member: long ``(M,)``, for each membership the position of the voxel among the inside voxels
            (the order of ``flat[bags.inside]``); a voxel belongs to up to one plane per axis.
        segment: long ``(M,)``, the plane bag of each membership, ``0..count-1``.
        box: long ``(count,)``, the box bag (index into :class:`~nnunet_fracture.losses.bag_aggregation.BoxBags`)
            each plane belongs to.
        axis: long ``(count,)``, the spatial axis each plane is perpendicular to.
    """

    member: torch.Tensor
    segment: torch.Tensor
    box: torch.Tensor
    axis: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.box.numel())


def inside_coordinates(bags: BoxBags) -> torch.Tensor:
    """long ``(M, D)``: the spatial coordinates of every inside voxel, in the order of ``flat[bags.inside]``."""
    spatial = bags.shape[2:]
    flat = torch.nonzero(bags.inside.reshape(-1), as_tuple=False).squeeze(1) % math.prod(spatial)
    coords = []
    for size in reversed(spatial):
        coords.append(flat % size)
        flat = torch.div(flat, size, rounding_mode="floor")
    return torch.stack(coords[::-1], dim=1)


def box_extents(bags: BoxBags, coords: torch.Tensor | None = None) -> BoxExtents:
    """The extent of every box bag in its patch, and which of its sides the patch border cuts."""
    coords = inside_coordinates(bags) if coords is None else coords
    k, d = bags.count, coords.shape[1]
    index = bags.voxel_bag.unsqueeze(1).expand(-1, d)
    lo = coords.new_full((k, d), torch.iinfo(torch.long).max).scatter_reduce(0, index, coords, "amin")
    hi = coords.new_full((k, d), -1).scatter_reduce(0, index, coords, "amax")
    sizes = torch.tensor(bags.shape[2:], device=coords.device)
    return BoxExtents(lo, hi, lo == 0, hi == sizes - 1)


def check_margin(margin: object, n_axes: int | None = None) -> tuple[float, ...]:
    """Check an annotation margin: one number >= 0 per spatial axis (voxels).

    Raises:
        ValueError: if it is not a sequence of finite numbers >= 0 (of length ``n_axes`` when given).
    """
    if isinstance(margin, (str, bytes)) or not isinstance(margin, Sequence) or not margin or not all(
            isinstance(m, Real) and not isinstance(m, bool) and math.isfinite(m) and m >= 0 for m in margin):
        raise ValueError(f"margin must be one finite number >= 0 (voxels) per spatial axis, got {margin!r}")
    if n_axes is not None and len(margin) != n_axes:
        raise ValueError(f"margin has {len(margin)} entries but the patch has {n_axes} spatial axes")
    return tuple(float(m) for m in margin)


def check_per_spatial_axis(name: str, value: Sequence[float], logits_shape: Sequence[int]) -> None:
    """Check that a per-axis setting (a margin, a rim) has one entry per spatial axis of ``(B, C, *spatial)`` logits.

    Raises:
        ValueError: quoting both lengths and the logits' shape.
    """
    if len(value) != len(logits_shape) - 2:
        raise ValueError(f"{name} has {len(value)} entries but logits {tuple(logits_shape)} has "
                         f"{len(logits_shape) - 2} spatial axes")


def check_axes(axes: object, n_axes: int) -> tuple[int, ...]:
    """Check the spatial axes that get plane bags: distinct integers in ``[0, n_axes)``, at least one.

    Raises:
        ValueError: otherwise.
    """
    ok = (not isinstance(axes, (str, bytes)) and isinstance(axes, Sequence) and len(axes) > 0
          and all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a < n_axes for a in axes)
          and len(set(axes)) == len(axes))
    if not ok:
        raise ValueError(f"axes must be distinct spatial axes in [0, {n_axes}), at least one, got {axes!r}")
    return tuple(sorted(axes))


def find_plane_bags(bags: BoxBags, margin: Sequence[float], axes: Sequence[int] | None = None) -> PlaneBags:
    """The plane bags of every box bag: the cross-sections of its core, the box shrunk by ``margin`` voxels (per
    spatial axis, rounded up) of annotation margin on every side.

    Args:
        bags: the box bags of one box-number map.
        margin: annotation margin in voxels at this map's resolution, one entry per spatial axis.
        axes: the spatial axes whose planes are bags (``None``: every axis). The other axes are free: not shrunk,
            no planes, their cuts not held against a plane (slice ranges, module docstring).

    Returns:
        :class:`PlaneBags` (``count == 0`` when no box has a valid plane).
    """
    n_axes = len(bags.shape) - 2
    margin = check_margin(margin, n_axes)
    axes = tuple(range(n_axes)) if axes is None else check_axes(axes, n_axes)
    coords = inside_coordinates(bags)
    ext = box_extents(bags, coords)
    shrink = torch.tensor([math.ceil(m - 1e-6) if m > 0 and a in axes else 0 for a, m in enumerate(margin)],
                          device=coords.device)
    core_lo, core_hi = ext.lo + shrink, ext.hi - shrink
    bound = torch.tensor([a in axes for a in range(n_axes)], device=coords.device)
    cut = (ext.cut_lo | ext.cut_hi) & bound
    longest = max(bags.shape[2:])
    members, keys = [], []
    # an axis on which the box is thinner than twice the margin gets no planes, and is not shrunk for the others
    too_thin = core_lo > core_hi
    section_lo, section_hi = torch.where(too_thin, ext.lo, core_lo), torch.where(too_thin, ext.hi, core_hi)
    in_core = ((coords >= section_lo[bags.voxel_bag]) & (coords <= section_hi[bags.voxel_bag])).all(dim=1)
    for a in axes:
        others_cut = torch.cat([cut[:, :a], cut[:, a + 1:]], dim=1).any(dim=1)
        valid = ~others_cut & ~too_thin[:, a]
        bag, k = bags.voxel_bag, coords[:, a]
        keep = valid[bag] & in_core
        members.append(torch.nonzero(keep, as_tuple=False).squeeze(1))
        keys.append((bag[keep] * n_axes + a) * longest + k[keep])
    member, key = torch.cat(members), torch.cat(keys)
    if key.numel() == 0:
        empty = key.new_zeros(0)
        return PlaneBags(empty, empty, empty, empty)
    unique, segment = torch.unique(key, sorted=True, return_inverse=True)
    box_axis = torch.div(unique, longest, rounding_mode="floor")
    return PlaneBags(member, segment, torch.div(box_axis, n_axes, rounding_mode="floor"), box_axis % n_axes)


def rim_voxels(bags: BoxBags, rim: Sequence[float]) -> torch.Tensor:
    """Which inside voxels lie in a box's rim: within ``rim`` voxels (per spatial axis, rounded *down*, so a
    lower deep-supervision scale keeps only whole voxels of it) of a side of their box that the patch does not
    cut (a cut side is not the box's own edge).

    Args:
        bags: the box bags of one box-number map.
        rim: rim thickness in voxels at this map's resolution, one entry per spatial axis.

    Returns:
        bool ``(M,)``, in the order of ``flat[bags.inside]``.
    """
    rim = check_margin(rim, len(bags.shape) - 2)
    coords = inside_coordinates(bags)
    ext = box_extents(bags, coords)
    depth = torch.tensor([math.floor(r + 1e-6) for r in rim], device=coords.device)
    bag = bags.voxel_bag
    near_lo = (coords - ext.lo[bag] < depth) & ~ext.cut_lo[bag]
    near_hi = (ext.hi[bag] - coords < depth) & ~ext.cut_hi[bag]
    return (near_lo | near_hi).any(dim=1)
