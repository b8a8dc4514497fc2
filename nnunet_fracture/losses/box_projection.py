"""The box projection prior: a box's maximum-projection profile along each axis fills its core (BoxInst's projection
term, in 3D)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nnunet_fracture.losses.bag_aggregation import BoxNumbers, checked_bags, pool_segments
from nnunet_fracture.losses.plane_bags import check_axes, check_margin, check_per_spatial_axis, find_plane_bags
from nnunet_fracture.losses.window_mean import check_width, window_mean_logits


class BoxProjectionLoss(nn.Module):
    """Along every axis ``a`` of a box, the profile ``m_a[k]`` - the maximum P over the box core's cross-section at
    index ``k`` - is 1 on the whole core extent:

    ``L = mean over (box, axis) of 1 - 2 sum_k m_a[k] / (sum_k m_a[k]^2 + n_a)``

    the Dice loss of the profile against an all-ones target of the core's ``n_a`` indices. This is the projection
    term of Tian et al., "BoxInst: High-performance instance segmentation with box annotations", CVPR 2021 (the mask's
    maximum along each image axis, Dice against the box's projection), with the maximum taken over planes in 3D. Two
    changes follow the plane bags of :mod:`nnunet_fracture.losses.plane_bags`, whose planes this term reuses: the
    margin band between the core and the box edge (annotation overhang) is left out of the profile, so the target is
    all ones, and the sides of a box that the patch cuts drop the other axes' profiles. BoxInst's projection also
    asks the profile to be 0 beyond the box; here that is the outside term's business (L1 of
    :class:`~nnunet_fracture.losses.WeakBoxLoss`).

    Unlike the focal unary over plane bags (:class:`~nnunet_fracture.losses.BoxTightnessLoss`), which scores each
    plane on its own, the Dice couples the planes of one axis: a profile that is 1 on most of the core and 0 on a
    few planes still scores well.

    Args:
        margin: annotation margin in voxels, one per spatial axis, at the resolution of the logits.
        window: each voxel scores the mean P of the ``window``-voxel cube at it (1: its own P; see
            :func:`~nnunet_fracture.losses.window_mean.window_mean_logits`).
        axes: the spatial axes that get profiles (``None``: every axis; ``(slice_axis,)`` for slice ranges).

    Raises:
        ValueError: on a margin that is not one number >= 0 per axis, a window that is not an integer >= 1, or bad
            axes.
    """

    def __init__(self, margin: Sequence[float] = (1.0, 1.0, 1.0), window: int = 1,
                 axes: Sequence[int] | None = None) -> None:
        super().__init__()
        self.margin = check_margin(margin)
        self.window = check_width(window)
        self.axes = None if axes is None else check_axes(axes, len(self.margin))

    def forward(self, logits: torch.Tensor, box_numbers: BoxNumbers, margin: Sequence[float] | None = None,
                window: int | None = None) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 1, *spatial)`` fracture logits.
            box_numbers: ``(B, 1, *spatial)`` box-number map, or its ``BoxBags``.
            margin: the annotation margin at this resolution, if it differs from the constructor's.
            window: the window at this resolution, likewise.

        Returns:
            float32 scalar (0, still connected to the graph, when no box has a profile).

        Raises:
            ValueError: if ``logits`` has more than one channel, the shapes differ or ``margin`` has the wrong
                length.
        """
        bags = checked_bags(logits, box_numbers)
        margin = self.margin if margin is None else check_margin(margin)
        check_per_spatial_axis("margin", margin, logits.shape)
        window = self.window if window is None else check_width(window)
        x = logits.float()
        planes = find_plane_bags(bags, margin, self.axes) if bags.count else None
        if planes is None or not planes.count:
            return x.sum() * 0.0
        scored = (x if window == 1 else window_mean_logits(x, window)).reshape(x.shape[0], -1)[bags.inside]
        profile = pool_segments(scored[planes.member], planes.segment, planes.count, "max")
        _, group = torch.unique(planes.box * (logits.ndim - 2) + planes.axis, return_inverse=True)
        n_groups = int(group.max()) + 1
        overlap = profile.new_zeros(n_groups).index_add(0, group, profile)
        squares = profile.new_zeros(n_groups).index_add(0, group, profile ** 2)
        length = torch.bincount(group, minlength=n_groups).to(profile.dtype)
        return (1 - 2 * overlap / (squares + length)).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, window={self.window}, axes={self.axes}"
