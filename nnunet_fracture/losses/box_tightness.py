"""The box tightness prior as a focal multiple-instance loss over plane bags (Wang & Xia, MICCAI 2021, in 3D)."""
from __future__ import annotations

import math
from numbers import Real
from typing import Sequence

import torch
from torch import nn

from nnunet_fracture.losses.bag_aggregation import BoxNumbers, check_aggregation, checked_bags, pool_segments
from nnunet_fracture.losses.plane_bags import (check_axes, check_margin, check_per_spatial_axis, find_plane_bags,
                                               rim_voxels)
from nnunet_fracture.losses.window_mean import check_width, window_mean_logits


def _check_unit(name: str, value: object, low_open: bool = False) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
    if not ok or (low_open and value == 0):
        raise ValueError(f"{name} must be a number in {'(0' if low_open else '[0'}, 1], got {value!r}")
    return float(value)


class BoxTightnessLoss(nn.Module):
    """Every plane through a box's core holds fracture; every voxel outside all boxes is background.

    ``L = -mean_pos beta (1 - S)^gamma log S - mean_out (1 - beta) P^gamma_out log(1 - P)``

    over the plane bags of :mod:`nnunet_fracture.losses.plane_bags` (``S``: the bag's smooth maximum, the
    alpha-softmax ``sum p exp(alpha p) / sum exp(alpha p)``) and the voxels outside every box (each its own
    negative bag). This is the unary term of Wang & Xia, "Bounding box tightness prior for weakly supervised
    image segmentation", MICCAI 2021 (their defaults ``beta = 0.25``, ``gamma = 2``, ``alpha`` in 4-8), with their
    lines across a 2D box replaced by the planes across a 3D box, and one change: Wang & Xia divide both sums by
    the number of positive bags. In a 2D image the negative pixels outnumber the line bags about a hundredfold;
    in a 3D patch the outside voxels outnumber the plane bags about ten-thousandfold, and with their
    normalisation the network learned to keep P near 0 everywhere (measured on the bench phantom: no box reached
    P = 0.5 in 30 epochs, PR-AUC 0.014). Each term is therefore averaged over its own members. And the focal
    factor is set apart for the outside voxels (``gamma_out``, default 0: plain cross entropy): with
    ``gamma_out = 2`` the few outside voxels that look like a fracture weigh too little in the mean, and the
    network painted 7 % of the bone outside the boxes (bench phantom, 30 epochs). Unlike a mean over the box (``BoxMILLoss`` with ``aggregation="mean"``), which is
    minimised only by ``P = 1`` on the whole box, a smooth maximum is satisfied by a few confident voxels per
    plane, so the network is free to leave the rest of the box - mostly healthy bone - at 0.

    Hard negatives (``outside_top < 1``): the outside term is averaged over only the share ``outside_top`` of
    outside voxels with the highest loss in the batch (online hard example mining, Shrivastava et al., "Training
    region-based object detectors with online hard example mining", CVPR 2016). A mean over every outside voxel
    gives each a weight about a thousand times smaller than a plane bag's most confident voxel, so a healthy
    endplate that looks like a fracture band costs next to nothing; mined, it is among the few voxels averaged.

    The box's rim (``rim > 0``): when boxes are drawn with clearance - every side at least ``rim`` voxels away
    from the fracture - the rim of that depth is background as surely as the outside is, and its voxels join the
    outside term. Measured on the bench phantom (``plus_rim``, README): it hurts there - only 1-2 % of a band
    box's false positives lie in the outer layer, and the layer beside a band looks like the band, so the network
    suppressed both (in-box Dice 0.203 against 0.525). Off by default.

    Solid bags (``window > 1``): each plane bag scores the mean P over the ``window``-voxel cube at each of its
    voxels (:func:`~nnunet_fracture.losses.window_mean.window_mean_logits`) instead of the voxel's own P. A
    smooth maximum of single voxels is satisfied by a lattice - every other voxel of a slice confident,
    which the weak-box network learned on the bench phantom - and a window mean is not: a bag then asks for a
    run of fracture at least ``window`` voxels thick. The outside voxels stay single voxels.

    Slice ranges (``axes``): with only the slice axis listed, the bags are the whole slices of each range's core,
    and nothing is asked of where in a slice the fracture lies (:mod:`~nnunet_fracture.losses.plane_bags`).

    Logs are taken from the logits (``log S`` by log-sum-exp, ``log(1 - P) = -softplus(x)``), so the loss is
    finite for any logit.

    Args:
        margin: annotation margin in voxels, one per spatial axis, at the resolution of the logits.
        alpha: smooth-max sharpness (> 0).
        beta: weight of the positive bags in [0, 1] (negatives get ``1 - beta``).
        gamma: focal exponent of the plane bags (>= 0; 0 gives plain cross entropy).
        gamma_out: focal exponent of the outside voxels (>= 0).
        aggregation: the plane pool, ``"smooth_max"`` (default), ``"max"`` or ``"mean"``.
        outside_top: the share of outside voxels, hardest first, the outside term averages, in (0, 1]
            (1: all of them).
        rim: the box's rim that is background, voxels per spatial axis (0: none); at most ``margin``.
        window: the edge of the cube whose mean P a plane bag's voxel contributes, an integer >= 1 (1: the
            voxel's own P).
        axes: the spatial axes whose planes are bags (``None``: every axis; ``(slice_axis,)`` for slice ranges).

    Raises:
        ValueError: on any argument outside these ranges.
    """

    def __init__(self, margin: Sequence[float] = (1.0, 1.0, 1.0), alpha: float = 4.0, beta: float = 0.25,
                 gamma: float = 2.0, aggregation: str = "smooth_max", gamma_out: float = 0.0,
                 outside_top: float = 1.0, rim: Sequence[float] | None = None, window: int = 1,
                 axes: Sequence[int] | None = None) -> None:
        super().__init__()
        check_aggregation(aggregation, alpha)
        self.margin = check_margin(margin)
        self.rim = check_margin((0.0,) * len(self.margin) if rim is None else rim, len(self.margin))
        if any(r > m for r, m in zip(self.rim, self.margin)):
            raise ValueError(f"rim {self.rim} must not exceed the annotation margin {self.margin}: a rim voxel "
                             f"would also sit in a plane bag")
        self.alpha, self.aggregation = float(alpha), aggregation
        self.beta = _check_unit("beta", beta)
        self.outside_top = _check_unit("outside_top", outside_top, low_open=True)
        for name, value in (("gamma", gamma), ("gamma_out", gamma_out)):
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.gamma, self.gamma_out = float(gamma), float(gamma_out)
        self.window = check_width(window)
        self.axes = None if axes is None else check_axes(axes, len(self.margin))

    def forward(self, logits: torch.Tensor, box_numbers: BoxNumbers, margin: Sequence[float] | None = None,
                rim: Sequence[float] | None = None, window: int | None = None) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 1, *spatial)`` fracture logits.
            box_numbers: ``(B, 1, *spatial)`` box-number map, or its ``BoxBags``.
            margin: the annotation margin at this resolution, if it differs from the constructor's (a lower
                deep-supervision scale).
            rim: the background rim at this resolution, likewise.
            window: the window of the plane bags at this resolution, likewise.

        Returns:
            float32 scalar.

        Raises:
            ValueError: if ``logits`` has more than one channel, the shapes differ or ``margin`` has the wrong
                length.
        """
        bags = checked_bags(logits, box_numbers)
        margin = self.margin if margin is None else check_margin(margin)
        rim = self.rim if rim is None else check_margin(rim)
        window = self.window if window is None else check_width(window)
        check_per_spatial_axis("margin", margin, logits.shape)
        check_per_spatial_axis("rim", rim, logits.shape)
        x = logits.float().reshape(logits.shape[0], -1)
        total = x.sum() * 0.0
        planes = find_plane_bags(bags, margin, self.axes) if bags.count else None
        if planes is not None and planes.count:
            scored = x if window == 1 else window_mean_logits(logits.float(), window).reshape(x.shape)
            inside = scored[bags.inside]
            log_s = pool_segments(inside[planes.member], planes.segment, planes.count, self.aggregation,
                                  self.alpha, log=True)
            total = total - (self.beta * (-torch.expm1(log_s)) ** self.gamma * log_s).mean()
        outside = x[bags.outside]
        if bags.count and any(r >= 1 for r in rim):
            outside = torch.cat([outside, x[bags.inside][rim_voxels(bags, rim)]])
        if outside.numel():
            p = torch.sigmoid(outside)
            loss = p ** self.gamma_out * torch.nn.functional.softplus(outside)
            if self.outside_top < 1:
                loss = loss.topk(max(1, math.ceil(self.outside_top * loss.numel())), sorted=False).values
            total = total + (1 - self.beta) * loss.mean()
        return total

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, aggregation={self.aggregation!r}, alpha={self.alpha}, beta={self.beta}, "
                f"gamma={self.gamma}, gamma_out={self.gamma_out}, outside_top={self.outside_top}, rim={self.rim}, "
                f"window={self.window}, axes={self.axes}")
