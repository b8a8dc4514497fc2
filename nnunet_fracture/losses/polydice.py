"""PolyDice-1: the Dice loss split into a scale and an angle, with a tunable (per-image) angle coefficient.

Flatten one image's prediction ``p`` and target ``y`` of one class into vectors. Dice loss is
``1 - 2<p,y> / (|p|^2 + |y|^2) = 1 - s cos(theta)`` with the scale ``s = 2<p,y> / (|p|^2 + |y|^2)`` and the angle
``theta = arccos(<p,y> / (|p| |y|))``. Expanding ``cos`` around 0 gives the polynomial Dice loss
``(1 - s) + s sum_k alpha_k theta^(2k)``, ``alpha_k = (-1)^(k-1) / (2k)!``; keeping the first term and perturbing its
coefficient as PolyLoss does (Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
Functions", ICLR 2022) gives

    L = (1 - s) + s (1/2 + eps1) theta^2.

With ``eps1 = 0`` this is Dice loss to second order in ``theta``. ``eps1`` can differ per image (set from
MC-Dropout difficulty by ``nnUNetTrainerPolyDiceMCD``). The derivation follows the research plan (Hiroike,
"Robust medical image segmentation with an uncertainty-adaptive loss", Hiroshima University 2025); the geometric
reading of Dice loss follows Kato & Hotta, "Adaptive t-vMF Dice loss", Computers in Biology and Medicine 2024.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional, Sequence, Union

import torch
from torch.autograd.function import once_differentiable
from torch.nn.modules.loss import _Loss

from nnunet_fracture.losses.overlap_terms import (check_activation, check_reduction, masked_class_maps,
                                                  per_image_epsilon, reduce)

Epsilon = Union[None, float, Sequence[float], torch.Tensor]
#: below this angle the derivative factor theta / sin(theta) is evaluated by its series 1 + theta^2 / 6
_SMALL_ANGLE = 1e-3


class _ArccosSquared(torch.autograd.Function):
    """``theta^2 = arccos(u)^2`` with the derivative ``-2 theta / sin(theta)`` evaluated stably.

    ``u`` is clamped to ``[-1, 1]`` (rounding can push a cosine just past 1). The derivative of ``arccos`` alone is
    infinite at ``u = 1``, but that of ``arccos^2`` tends to ``-2``; clamping ``u`` below 1 instead would leave the
    angular term without gradient near a perfect prediction. At ``u = -1`` (``theta = pi``, impossible for
    non-negative ``p`` and ``y``) ``sin`` is bounded below so the gradient stays finite.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor) -> torch.Tensor:
        theta = torch.arccos(u.clamp(-1.0, 1.0))
        ctx.save_for_backward(theta)
        return theta * theta

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (theta,) = ctx.saved_tensors
        ratio = torch.where(theta < _SMALL_ANGLE, 1.0 + theta * theta / 6.0,
                            theta / torch.sin(theta).clamp_min(1e-6))
        return grad * (-2.0 * ratio)


def arccos_squared(u: torch.Tensor) -> torch.Tensor:
    """``arccos(u)^2`` with finite gradients on ``[-1, 1]`` (see :class:`_ArccosSquared`)."""
    return _ArccosSquared.apply(u)


class PolyDice1Loss(_Loss):
    """PolyDice-1 loss ``L = (1 - s) + s (1/2 + eps1) theta^2``, per image and per class.

    For image ``b`` and class ``c`` with prediction ``p`` (probabilities) and target ``y`` (one-hot), both
    flattened over the spatial axes (and multiplied by ``loss_mask`` where given):
    ``s = 2<p,y> / (|p|^2 + |y|^2)``, ``theta = arccos(<p,y> / (|p| |y|))``. ``theta^2`` has an exact, finite
    gradient also at ``theta -> 0`` (:func:`arccos_squared`).

    Empty sets (documented convention, tested):

    - target and prediction both empty (``|y| = |p| = 0``): ``s = 1``, ``theta = 0``, so ``L = 0`` (a perfect
      prediction of nothing).
    - exactly one of them empty: ``s = 0`` (the formula's value) and ``theta = pi/2`` (orthogonal), so ``L = 1``,
      the Dice loss of a complete miss. With soft predictions ``|p|`` is never exactly 0, so an empty target gives
      ``s = 0`` and ``L = 1`` with no gradient from this term (as for nnU-Net's per-image Dice); the cross-entropy
      of :class:`~nnunet_fracture.losses.compound.RegionAndPixelLoss` handles such images.

    No smoothing constant is added: the conventions above replace it.

    Args:
        activation: ``"softmax"`` (nnU-Net label training), ``"sigmoid"`` (region training) or ``"none"``
            (``net_output`` holds probabilities already).
        include_background: keep channel 0; nnU-Net leaves the background out of Dice for softmax outputs and
            keeps every channel for sigmoid (region) outputs.
        epsilon: ``eps1`` used when ``forward`` gets none; ``1/2 + eps1`` should stay >= 0.
        reduction: ``"mean"`` / ``"sum"`` over images and classes, or ``"none"`` for the ``(B, C')`` values.

    Raises:
        ValueError: on an unknown ``activation`` / ``reduction`` or a non-finite ``epsilon``.
    """

    def __init__(self, activation: str = "softmax", include_background: bool = False, epsilon: float = 0.0,
                 reduction: str = "mean") -> None:
        super().__init__(reduction=check_reduction(reduction))
        self.activation = check_activation(activation)
        self.include_background = bool(include_background)
        if isinstance(epsilon, bool) or not isinstance(epsilon, Real) or not math.isfinite(epsilon):
            raise ValueError(f"epsilon must be a finite number, got {epsilon!r}")
        self.epsilon = float(epsilon)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor, epsilon: Epsilon = None,
                loss_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            net_output: ``(B, C, *spatial)`` logits (probabilities for ``activation="none"``).
            target: label map ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``.
            epsilon: ``eps1`` per image: a tensor/sequence of ``B`` values, one number for all, or ``None`` for
                the constructor's value.
            loss_mask: optional ``(B, 1, *spatial)``, 0 where voxels are ignored.

        Returns:
            float32 loss, reduced as set by ``reduction``.

        Raises:
            ValueError: quoting both shapes when ``target`` or ``loss_mask`` does not fit ``net_output``, or when
                ``epsilon`` does not hold one value per image.
        """
        p, y, _ = masked_class_maps(net_output, target, loss_mask, self.activation, self.include_background)
        eps = per_image_epsilon(epsilon, self.epsilon, net_output.shape[0], net_output.device)
        with torch.autocast(device_type=p.device.type, enabled=False):
            axes = tuple(range(2, p.ndim))
            py = (p * y).sum(axes)
            pp = (p * p).sum(axes)
            yy = (y * y).sum(axes)
            values = polydice_from_sums(py, pp, yy, eps[:, None])
        return reduce(values, self.reduction)

    def extra_repr(self) -> str:
        return (f"activation={self.activation!r}, include_background={self.include_background}, "
                f"epsilon={self.epsilon}, reduction={self.reduction!r}")


def polydice_from_sums(py: torch.Tensor, pp: torch.Tensor, yy: torch.Tensor,
                       epsilon: torch.Tensor) -> torch.Tensor:
    """PolyDice-1 from ``<p,y>``, ``|p|^2``, ``|y|^2`` (same shapes; ``epsilon`` broadcasts), with the empty-set
    conventions of :class:`PolyDice1Loss`. Every ``where`` takes safe denominators, so no NaN reaches a gradient."""
    denominator = pp + yy
    has_any = denominator > 0
    s = torch.where(has_any, 2 * py / torch.where(has_any, denominator, torch.ones_like(denominator)),
                    torch.ones_like(denominator))
    norms_squared = pp * yy
    both = norms_squared > 0
    cosine = py * torch.rsqrt(torch.where(both, norms_squared, torch.ones_like(norms_squared)))
    # both non-empty: the cosine; exactly one empty: 0 (theta = pi/2); both empty: 1 (theta = 0)
    cosine = torch.where(both, cosine, torch.where(has_any, torch.zeros_like(cosine), torch.ones_like(cosine)))
    theta_squared = arccos_squared(cosine)
    return (1 - s) + s * (0.5 + epsilon) * theta_squared
