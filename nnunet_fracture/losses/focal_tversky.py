"""Focal Tversky loss (Abraham & Khan, "A novel focal Tversky loss function with improved attention U-Net for lesion
segmentation", ISBI 2019, arXiv:1810.07842).

Two parameterizations of the same loss are in use, and they name the weights the other way round:

- ``convention="plan"`` (MONAI's ``TverskyLoss`` and the research plan this project implements):
  ``TI = TP / (TP + alpha FP + beta FN)`` and ``L = (1 - TI)^gamma``. The plan's ``alpha = 0.3, beta = 0.7,
  gamma = 0.75`` weighs false negatives (beta) more and uses the exponent 0.75.
- ``convention="paper"`` (Abraham & Khan's paper): ``TI = TP / (TP + alpha FN + beta FP)`` and
  ``L = (1 - TI)^(1/gamma)``. The paper's ``alpha = 0.7, beta = 0.3, gamma = 4/3`` weighs false negatives (alpha)
  more and uses the exponent ``1/gamma = 0.75`` (their official code writes ``gamma = 0.75`` as the exponent).

Both defaults therefore give the same loss: false negatives weigh 0.7, false positives 0.3, exponent 0.75. An
exponent below 1 (``gamma < 1`` in "plan", ``gamma > 1`` in "paper") raises the loss and the gradient of images
with a high Tversky index, i.e. keeps pushing on nearly-right predictions of small structures.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional

import torch
from torch.nn.modules.loss import _Loss

from nnunet_fracture.losses.overlap_terms import check_activation, check_reduction, masked_class_maps, reduce

CONVENTIONS = ("plan", "paper")
#: below this ``1 - TI`` the power is continued linearly, so an exponent below 1 keeps a finite gradient
_MIN_DISTANCE = 1e-6


def _check_number(name: str, value: object, minimum: float = 0, strict: bool = False) -> float:
    bad = isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
        or (value <= minimum if strict else value < minimum)
    if bad:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


class FocalTverskyLoss(_Loss):
    """Focal Tversky loss, per image (or per batch) and per class, averaged over classes and images.

    With probabilities ``p`` and one-hot target ``g`` of one class (masked by ``loss_mask`` where given):
    ``TP = sum p g``, ``FP = sum p (1 - g)``, ``FN = sum (1 - p) g`` and
    ``TI = (TP + smooth) / (TP + w_FP FP + w_FN FN + smooth)``, where

    - ``convention="plan"``: ``w_FP = alpha``, ``w_FN = beta``, ``L = (1 - TI)^gamma`` (defaults 0.3, 0.7, 0.75);
    - ``convention="paper"``: ``w_FN = alpha``, ``w_FP = beta``, ``L = (1 - TI)^(1/gamma)`` (paper: 0.7, 0.3, 4/3).

    Empty sets: with ``smooth > 0`` an empty target predicted empty gives ``TI = 1``, ``L = 0``; with ``smooth = 0``
    the same case is defined as ``TI = 1`` too. Below ``1 - TI = 1e-6`` the power is continued linearly, which keeps
    the gradient finite for exponents below 1 and the loss of a perfect prediction exactly 0.

    Args:
        alpha: first Tversky weight (see ``convention``), >= 0.
        beta: second Tversky weight (see ``convention``), >= 0.
        gamma: focal parameter, > 0: the exponent itself ("plan") or its inverse ("paper").
        convention: ``"plan"`` or ``"paper"``, see the module docstring.
        activation: ``"softmax"``, ``"sigmoid"`` or ``"none"`` (``net_output`` holds probabilities).
        include_background: keep channel 0 (leave it out for softmax outputs, as nnU-Net's Dice does).
        batch: pool the sums over the batch (nnU-Net's ``batch_dice``) instead of per image.
        smooth: added to numerator and denominator, >= 0 (the paper's code uses 1; nnU-Net's Dice 1e-5).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B, C')`` values, ``(C',)`` with ``batch``).

    Raises:
        ValueError: naming the bad value for any argument outside the ranges above.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75, convention: str = "plan",
                 activation: str = "softmax", include_background: bool = False, batch: bool = False,
                 smooth: float = 1e-5, reduction: str = "mean") -> None:
        super().__init__(reduction=check_reduction(reduction))
        self.alpha = _check_number("alpha", alpha)
        self.beta = _check_number("beta", beta)
        self.gamma = _check_number("gamma", gamma, strict=True)
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        self.convention = convention
        self.activation = check_activation(activation)
        self.include_background = bool(include_background)
        self.batch = bool(batch)
        self.smooth = _check_number("smooth", smooth)

    @property
    def weight_fp(self) -> float:
        return self.alpha if self.convention == "plan" else self.beta

    @property
    def weight_fn(self) -> float:
        return self.beta if self.convention == "plan" else self.alpha

    @property
    def exponent(self) -> float:
        return self.gamma if self.convention == "plan" else 1.0 / self.gamma

    def forward(self, net_output: torch.Tensor, target: torch.Tensor,
                loss_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            net_output: ``(B, C, *spatial)`` logits (probabilities for ``activation="none"``).
            target: label map ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``.
            loss_mask: optional ``(B, 1, *spatial)``, 0 where voxels are ignored.

        Returns:
            float32 loss, reduced as set by ``reduction``.

        Raises:
            ValueError: quoting both shapes when ``target`` or ``loss_mask`` does not fit ``net_output``.
        """
        p, g, mask = masked_class_maps(net_output, target, loss_mask, self.activation, self.include_background)
        with torch.autocast(device_type=p.device.type, enabled=False):
            if mask is not None:
                not_g, not_p = (1 - g) * mask, (1 - p) * mask
            else:
                not_g, not_p = 1 - g, 1 - p
            axes = tuple(range(2, p.ndim))
            if self.batch:
                axes = (0, *axes)
            tp = (p * g).sum(axes)
            fp = (p * not_g).sum(axes)
            fn = (not_p * g).sum(axes)
            denominator = tp + self.weight_fp * fp + self.weight_fn * fn + self.smooth
            empty = denominator <= 0
            index = torch.where(empty, torch.ones_like(tp),
                                (tp + self.smooth) / torch.where(empty, torch.ones_like(denominator), denominator))
            distance = (1 - index).clamp_min(0.0)
            # below 1e-6 the power continues linearly (same value at 1e-6), so an exponent below 1 keeps a finite
            # gradient and a perfect prediction still gives exactly 0
            values = torch.where(distance > _MIN_DISTANCE, distance.clamp_min(_MIN_DISTANCE) ** self.exponent,
                                 distance * _MIN_DISTANCE ** (self.exponent - 1.0))
        return reduce(values, self.reduction)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, convention={self.convention!r} "
                f"(w_FP={self.weight_fp}, w_FN={self.weight_fn}, exponent={self.exponent:.4g}), "
                f"activation={self.activation!r}, include_background={self.include_background}, batch={self.batch}, "
                f"smooth={self.smooth}")
