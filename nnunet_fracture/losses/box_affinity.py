"""HU affinity inside boxes: neighbours of similar density get the same label (BoxInst's pairwise term, in 3D)."""
from __future__ import annotations

import math
from numbers import Real
from typing import Sequence

import torch
from torch import nn

from nnunet_fracture.losses.neighbour_pairs import boxes_region, check_pair_inputs, half_neighbourhood, pairs_in


class BoxAffinityLoss(nn.Module):
    """``L = -mean log(p_i p_j + (1 - p_i)(1 - p_j))`` over neighbour pairs inside one box whose densities are
    alike, ``exp(-|HU_i - HU_j| / theta) >= tau``.

    The pairwise term of Tian, Shen, Wang & Chen, "BoxInst: high-performance instance segmentation with box
    annotations", CVPR 2021, with colour replaced by Hounsfield units and their 2D 8-neighbourhood (dilation 2)
    by the 3D 26-neighbourhood, spread by ``dilation`` voxels per axis (the trainer sets it from millimetres).
    ``p_i p_j + (1 - p_i)(1 - p_j)`` is the probability that both voxels get the same label, so the term pulls
    similar neighbours towards agreement and leaves pairs across a density edge (a fracture band's border) free.
    Pairs with both voxels in the same box count. Outside the boxes the label is already known (background), so
    with ``border_pairs`` a pair across a box's border counts too, with the outside voxel's label fixed at 0: its
    agreement probability is ``1 - p_i`` of the inside voxel. Known background then flows into the box along
    tissue of like density - the cortex and cancellous bone a box shares with the vertebra around it - while a
    fracture band or cleft, an island of other density, is left to the bags. Logs come from the logits
    (``logaddexp`` of the two log-probabilities), so the term is finite for any logit.

    Args:
        theta: similarity scale in HU (> 0): a difference of ``theta`` HU gives similarity ``1/e``.
        tau: similarity threshold in (0, 1]; BoxInst used 0.3.
        dilation: voxels between neighbours, one per spatial axis (>= 1).
        border_pairs: also count pairs of one inside and one outside voxel, the outside one as background.

    Raises:
        ValueError: on arguments outside these ranges.
    """

    def __init__(self, theta: float = 50.0, tau: float = 0.3, dilation: Sequence[int] = (1, 1, 1),
                 border_pairs: bool = False) -> None:
        super().__init__()
        if isinstance(theta, bool) or not isinstance(theta, Real) or not math.isfinite(theta) or theta <= 0:
            raise ValueError(f"theta must be a finite number > 0 (HU), got {theta!r}")
        if isinstance(tau, bool) or not isinstance(tau, Real) or not 0 < tau <= 1:
            raise ValueError(f"tau must be a number in (0, 1], got {tau!r}")
        if isinstance(dilation, (str, bytes)) or not dilation or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dilation):
            raise ValueError(f"dilation must be one integer >= 1 per spatial axis, got {dilation!r}")
        if not isinstance(border_pairs, bool):
            raise ValueError(f"border_pairs must be True or False, got {border_pairs!r}")
        self.theta, self.tau, self.dilation = float(theta), float(tau), tuple(dilation)
        self.border_pairs = border_pairs
        self.offsets = half_neighbourhood(self.dilation)

    def forward(self, logits: torch.Tensor, box_numbers: torch.Tensor, image_hu: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 1, *spatial)`` fracture logits.
            box_numbers: ``(B, 1, *spatial)`` box-number map (0 = outside every box).
            image_hu: ``(B, 1, *spatial)`` CT in Hounsfield units, aligned with the logits.

        Returns:
            float32 scalar (a graph-connected zero when no pair qualifies).

        Raises:
            ValueError: if the shapes differ or ``dilation`` does not match the spatial axes.
        """
        check_pair_inputs(logits, self.dilation, box_numbers=box_numbers, image_hu=image_hu)
        numbers = box_numbers.detach().round().long()
        inside = (numbers > 0).flatten(0, 1).any(dim=0)
        if not bool(inside.any()):
            return logits.float().sum() * 0.0
        # every pair has a voxel inside a box, so the boxes' bounding region (grown by the reach of the
        # neighbourhood when border pairs count) holds every pair
        region = boxes_region(inside, self.dilation if self.border_pairs else (0,) * len(self.dilation))
        x, numbers, hu = logits[region].float(), numbers[region], image_hu[region].detach().float()
        log_p, log_q = torch.nn.functional.logsigmoid(x), torch.nn.functional.logsigmoid(-x)
        min_similarity_log = math.log(self.tau)
        total, count = logits.float().sum() * 0.0, 0
        for a, b in pairs_in(self.offsets, x.shape[2:]):
            alike = -(hu[a] - hu[b]).abs() / self.theta >= min_similarity_log
            keep = (numbers[a] == numbers[b]) & (numbers[a] > 0) & alike
            n = int(keep.sum())
            if n:
                agree = torch.logaddexp(log_p[a] + log_p[b], log_q[a] + log_q[b])
                total = total - agree[keep].sum()
                count += n
            if self.border_pairs:
                for first, second in ((a, b), (b, a)):  # the first voxel inside, the second outside
                    across = (numbers[first] > 0) & (numbers[second] == 0) & alike
                    n = int(across.sum())
                    if n:
                        total = total - log_q[first][across].sum()
                        count += n
        return total / max(count, 1)

    def extra_repr(self) -> str:
        return f"theta={self.theta}, tau={self.tau}, dilation={self.dilation}, border_pairs={self.border_pairs}"
