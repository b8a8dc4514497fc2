"""L3 of the weak-box losses: a box must look more like fracture than the background of its own sample."""
from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from nnunet_fracture.losses.bag_aggregation import BoxNumbers, aggregate_bags, checked_bags

CONTRAST_MODES = ("max", "mean")


class BoxContrastLoss(nn.Module):
    """``L3 = mean over bags of max(0, s(P[outside of sample b]) - s(P[bag (b, n)]) + margin)``.

    A hinge (margin ranking) between each box and the certain background of the same sample, ``s`` being the
    max (``mode="max"``: the most fracture-like background voxel must stay ``margin`` below the most
    fracture-like box voxel) or the mean (``mode="mean"``, the box-level variant). Only bags whose sample also
    has outside voxels take part; the terms are averaged over those bags of the local batch, and a batch with
    none gives a graph-connected zero. In ``"max"`` mode only the two arg-max voxels receive a gradient.

    Args:
        margin: hinge margin in probability units (>= 0).
        mode: ``"max"`` or ``"mean"``.

    Raises:
        ValueError: on a negative or non-finite ``margin`` or an unknown ``mode``.
    """

    def __init__(self, margin: float = 0.3, mode: str = "max") -> None:
        super().__init__()
        if isinstance(margin, bool) or not isinstance(margin, Real) or not math.isfinite(margin) \
                or margin < 0:
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        if mode not in CONTRAST_MODES:
            raise ValueError(f"unknown contrast mode {mode!r}; expected one of "
                             f"{', '.join(map(repr, CONTRAST_MODES))}")
        self.margin = float(margin)
        self.mode = mode

    def forward(self, logits: torch.Tensor, box_numbers: BoxNumbers) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 1, *spatial)`` fracture logits.
            box_numbers: ``(B, 1, *spatial)`` box-number map, or its
                :class:`~nnunet_fracture.losses.bag_aggregation.BoxBags`.

        Returns:
            float32 scalar: the mean hinge over the bags whose sample has outside voxels (a graph-connected zero
            when there are none).

        Raises:
            ValueError: if ``logits`` has more than one channel or the shapes differ.
        """
        bags = checked_bags(logits, box_numbers)
        x = logits.float()
        if bags.count == 0:
            return x.sum() * 0.0
        outside = bags.outside
        has_outside = outside.any(dim=1)[bags.sample]  # (K,)
        if not bool(has_outside.any()):
            return x.sum() * 0.0
        flat = x.reshape(x.shape[0], -1)
        if self.mode == "max":
            background = torch.sigmoid(flat.masked_fill(~outside, -math.inf).amax(dim=1))
        else:
            counts = outside.sum(dim=1).clamp_min(1).to(flat.dtype)
            background = (torch.sigmoid(flat) * outside).sum(dim=1) / counts
        boxes = aggregate_bags(x, bags, self.mode)
        hinge = torch.relu(background[bags.sample] - boxes + self.margin)
        return hinge[has_outside].mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mode={self.mode!r}"
