"""L1 of the weak-box losses: every voxel outside all boxes is certain background."""
from __future__ import annotations

import torch
from torch import nn

from nnunet_fracture.losses.bag_aggregation import BoxBags, BoxNumbers, check_weak_box_shapes


class OutsideBackgroundLoss(nn.Module):
    """``L1 = BCE(P[M_out], 0)``: binary cross entropy against 0 of every voxel outside all boxes.

    The mean runs over all outside voxels of the batch (not per sample first), computed from the logits as
    ``softplus(x)`` (= ``BCE-with-logits(x, 0)``) in float32. A batch with no outside voxel gives a zero that
    stays connected to the graph (``logits.sum() * 0``), so ``backward`` always works.

    Box supervision treats the area outside the boxes as background, as in Dai et al., "BoxSup", ICCV 2015,
    and Wang & Xia, "Bounding box tightness prior for weakly supervised image segmentation", MICCAI 2021.
    """

    def forward(self, logits: torch.Tensor, box_numbers: BoxNumbers) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 1, *spatial)`` fracture logits.
            box_numbers: ``(B, 1, *spatial)`` box-number map (0 = outside every box), or its
                :class:`~nnunet_fracture.losses.bag_aggregation.BoxBags`.

        Returns:
            float32 scalar.

        Raises:
            ValueError: if ``logits`` has more than one channel or the shapes differ.
        """
        check_weak_box_shapes(logits, box_numbers)
        x = logits.float()
        if isinstance(box_numbers, BoxBags):
            outside = box_numbers.outside.reshape(x.shape)
        else:
            outside = box_numbers.detach() == 0
        if not bool(outside.any()):
            return x.sum() * 0.0
        return torch.nn.functional.softplus(x[outside]).mean()
