"""L2 of the weak-box losses: every box contains fracture (multiple-instance learning, one bag per box)."""
from __future__ import annotations

import torch
from torch import nn

from nnunet_fracture.losses.bag_aggregation import (BoxNumbers, aggregate_bags, check_aggregation,
                                                    checked_bags)


class BoxMILLoss(nn.Module):
    """``L2 = mean over bags of BCE(aggregate(P[bag]), 1) = mean over bags of -log aggregate(P[bag])``.

    Each box of each sample is its own bag ``(b, n)`` - the multiple-instance view of box supervision: at least
    some voxels of a positive bag are fracture, but which ones is unknown, so the bag's pooled probability is
    pushed to 1 (Pathak, Shelhamer, Long & Darrell, "Fully convolutional multi-class multiple instance
    learning", ICLR workshop 2015; Wang & Xia, "Bounding box tightness prior for weakly supervised image
    segmentation", MICCAI 2021, whose alpha-softmax is the ``"smooth_max"`` pool). Unlike Wang & Xia's
    tightness prior, whose bags are the lines crossing a 2D box, a bag here is the whole box (or slice range).
    The log of the pool is computed from the logits without clamping (see
    :mod:`nnunet_fracture.losses.bag_aggregation`), so no ``eps`` is needed. Terms are averaged over the bags of
    the local batch; a batch without a bag gives a graph-connected zero.

    Args:
        aggregation: ``"mean"`` (3D boxes), ``"max"`` (slice ranges) or ``"smooth_max"``.
        alpha: sharpness of ``"smooth_max"`` (> 0; ignored by the other pools).

    Raises:
        ValueError: on an unknown ``aggregation`` or ``alpha <= 0``.
    """

    def __init__(self, aggregation: str = "mean", alpha: float = 4.0) -> None:
        super().__init__()
        check_aggregation(aggregation, alpha)
        self.aggregation = aggregation
        self.alpha = float(alpha)

    def forward(self, logits: torch.Tensor, box_numbers: BoxNumbers) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 1, *spatial)`` fracture logits.
            box_numbers: ``(B, 1, *spatial)`` box-number map, or its
                :class:`~nnunet_fracture.losses.bag_aggregation.BoxBags`.

        Returns:
            float32 scalar: ``-mean log aggregate(P[bag])`` over the bags (a graph-connected zero without bags).

        Raises:
            ValueError: if ``logits`` has more than one channel or the shapes differ.
        """
        bags = checked_bags(logits, box_numbers)
        if bags.count == 0:
            return logits.float().sum() * 0.0
        log_pool = aggregate_bags(logits, bags, self.aggregation, self.alpha, log=True)
        return -log_pool.mean()

    def extra_repr(self) -> str:
        return f"aggregation={self.aggregation!r}, alpha={self.alpha}"
