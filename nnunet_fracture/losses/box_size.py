"""Size bounds on each box through the extended log-barrier (Kervadec et al., MIDL 2020)."""
from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from nnunet_fracture.losses.bag_aggregation import BoxNumbers, aggregate_bags, checked_bags
from nnunet_fracture.losses.plane_bags import box_extents


def check_sharpness(t: object) -> None:
    """Raise ``ValueError`` unless ``t`` (the barrier's sharpness) is a finite number > 0."""
    if isinstance(t, bool) or not isinstance(t, Real) or not math.isfinite(t) or t <= 0:
        raise ValueError(f"t must be a finite number > 0, got {t!r}")


def extended_log_barrier(z: torch.Tensor, t: float) -> torch.Tensor:
    """The extended log-barrier ``psi_t(z)`` of a constraint ``z <= 0`` (Kervadec, Dolz, Yuan, Desrosiers,
    Granger & Ben Ayed, "Constrained deep networks: Lagrangian optimization via log-barrier extensions",
    EUSIPCO 2022; used for box priors in Kervadec et al., "Bounding boxes for weakly supervised segmentation:
    global constraints get close to full supervision", MIDL 2020):

    - ``-(1/t) log(-z)`` where ``z <= -1/t**2``;
    - ``t z - (1/t) log(1/t**2) + 1/t`` elsewhere, the tangent that continues it linearly, so a violated
      constraint has a finite value and a gradient ``t``.

    It is continuous and differentiable at ``z = -1/t**2``; the larger ``t``, the closer it is to a hard barrier.
    """
    check_sharpness(t)
    edge = -1.0 / t ** 2
    inner = -torch.log(-torch.clamp(z, max=edge)) / t
    outer = t * z - math.log(1.0 / t ** 2) / t + 1.0 / t
    return torch.where(z <= edge, inner, outer)


class BoxSizeLoss(nn.Module):
    """``L = mean over whole boxes of psi_t(lower - mean_B P) + psi_t(mean_B P - upper)``.

    The fracture fills a share of its box between ``lower`` and ``upper``: Kervadec et al.'s size constraint
    ``eps_l |B| <= sum_B P <= eps_u |B|`` (MIDL 2020; they used ``[0.5, 0.9]`` for the prostate and
    ``[0.3, 0.75]`` for ATLAS lesions), divided by ``|B|`` so that big and small boxes weigh the same. Only boxes
    that lie whole in the patch are constrained (the share of a cut box is unknown). ``t`` is the barrier's
    sharpness; the trainer raises it each epoch (Kervadec et al.: start 5, times 1.1 per epoch).

    Args:
        lower, upper: the bounds on the share, ``0 <= lower < upper <= 1``.
        t: initial barrier sharpness (> 0).

    Raises:
        ValueError: on bounds or ``t`` outside these ranges.
    """

    def __init__(self, lower: float = 0.02, upper: float = 0.3, t: float = 5.0) -> None:
        super().__init__()
        for name, value in (("lower", lower), ("upper", upper)):
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if lower >= upper:
            raise ValueError(f"lower ({lower}) must be below upper ({upper})")
        check_sharpness(t)
        self.lower, self.upper, self.t = float(lower), float(upper), float(t)

    def forward(self, logits: torch.Tensor, box_numbers: BoxNumbers) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 1, *spatial)`` fracture logits.
            box_numbers: ``(B, 1, *spatial)`` box-number map, or its ``BoxBags``.

        Returns:
            float32 scalar (a graph-connected zero when no box lies whole in the patch).
        """
        bags = checked_bags(logits, box_numbers)
        zero = logits.float().sum() * 0.0
        if bags.count == 0:
            return zero
        whole = box_extents(bags).whole
        if not bool(whole.any()):
            return zero
        share = aggregate_bags(logits, bags, "mean")[whole]
        return (extended_log_barrier(self.lower - share, self.t) +
                extended_log_barrier(share - self.upper, self.t)).mean()

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}, t={self.t}"
