"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017), voxel-wise for segmentation."""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from nnunet_fracture.losses.overlap_terms import check_mask, check_reduction, one_hot_target


class FocalLoss(_Loss):
    """``FL = -alpha_t (1 - p_t)^gamma log(p_t)``, averaged over the (unmasked) voxels.

    ``p_t`` is the probability of the true class: from a softmax over the channels for a label-map target
    (``activation="softmax"``), or per channel from a sigmoid for one-hot / region targets (``"sigmoid"``), where
    ``p_t = p`` for a positive and ``1 - p`` for a negative element. ``log(p_t)`` comes from ``log_softmax`` /
    ``logsigmoid`` of the logits, so it is finite for any logit.

    ``alpha`` (Lin et al.'s class balance) weighs foreground: ``alpha_t = alpha`` for a positive element (sigmoid)
    or a voxel of a class other than 0 (softmax), ``1 - alpha`` otherwise; ``None`` weighs all alike. ``gamma = 0``
    and ``alpha = None`` give cross entropy.

    Args:
        gamma: focusing parameter, >= 0 (Lin et al.: 2).
        alpha: foreground weight in ``[0, 1]`` or ``None`` (Lin et al.: 0.25 with gamma 2 for detection).
        activation: ``"softmax"`` (label map target) or ``"sigmoid"`` (one-hot / region target).
        reduction: ``"mean"`` over unmasked elements, ``"sum"``, or ``"none"`` for the element-wise map.

    Raises:
        ValueError: naming the bad value for a ``gamma`` < 0, an ``alpha`` outside ``[0, 1]``, or an unknown
            ``activation`` / ``reduction``.
    """

    def __init__(self, gamma: float = 2.0, alpha: Optional[float] = None, activation: str = "softmax",
                 reduction: str = "mean") -> None:
        super().__init__(reduction=check_reduction(reduction))
        if isinstance(gamma, bool) or not isinstance(gamma, Real) or not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0 <= alpha <= 1):
            raise ValueError(f"alpha must be None or a number in [0, 1], got {alpha!r}")
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)
        self.activation = activation

    def forward(self, net_output: torch.Tensor, target: torch.Tensor,
                loss_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            net_output: ``(B, C, *spatial)`` logits.
            target: label map ``(B, 1, *spatial)`` (softmax) or one-hot ``(B, C, *spatial)``.
            loss_mask: optional ``(B, 1, *spatial)``, 0 where voxels are ignored.

        Returns:
            float32 loss; ``reduction="none"`` gives ``(B, 1, *spatial)`` (softmax) or ``(B, C, *spatial)``.

        Raises:
            ValueError: quoting both shapes when ``target`` or ``loss_mask`` does not fit ``net_output``.
        """
        mask = check_mask(net_output, loss_mask)
        y = one_hot_target(net_output, target)
        with torch.autocast(device_type=net_output.device.type, enabled=False):
            x = net_output.float()
            if self.activation == "softmax":
                log_pt = (F.log_softmax(x, dim=1) * y).sum(1, keepdim=True)
                positive = 1.0 - y[:, :1]  # any class but 0 is foreground
            else:
                log_pt = F.logsigmoid(torch.where(y > 0.5, x, -x))
                positive = y
            one_minus_pt = -torch.expm1(log_pt)  # 1 - p_t, exact also when p_t is close to 1
            values = -log_pt
            if self.gamma != 0:
                values = values * one_minus_pt.clamp_min(1e-12) ** self.gamma  # finite gradient for gamma < 1
            if self.alpha is not None:
                values = values * (self.alpha * positive + (1 - self.alpha) * (1 - positive))
            if mask is not None:
                values = values * mask
            if self.reduction == "none":
                return values
            if self.reduction == "sum":
                return values.sum()
            count = values.numel() if mask is None else mask.sum() * values.shape[1]
            return values.sum() / torch.as_tensor(count, dtype=torch.float32, device=values.device).clamp_min(1.0)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, activation={self.activation!r}"
