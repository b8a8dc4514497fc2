"""An overlap loss plus a voxel loss, combined the way nnU-Net combines Dice and cross entropy.

nnU-Net's ``DC_and_CE_loss`` (label training, softmax) and ``DC_and_BCE_loss`` (region training, sigmoid) in
``nnunetv2/training/loss/compound_losses.py`` define how the two terms share a target and the ignore label;
:class:`RegionAndPixelLoss` keeps those semantics and lets both terms be swapped (PolyDice-1 for Dice, focal
loss for cross entropy). The default voxel term is nnU-Net's own (``RobustCrossEntropyLoss`` /
``BCEWithLogitsLoss``), so ``PolyDice + CE`` differs from nnU-Net's default loss only in the overlap term.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional

import torch
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss
from torch import nn
from torch.nn.modules.loss import _Loss


def _check_weight(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class RegionAndPixelLoss(_Loss):
    """``weight_region * region + weight_pixel * pixel`` with nnU-Net's target and ignore-label handling.

    Label training (``regions=False``, softmax outputs, target a label map ``(B, 1, *spatial)``): with an
    ``ignore_label``, voxels carrying it are masked out of the region term (``loss_mask``, their label replaced by
    0) and ignored by the voxel term (``ignore_index``); a batch without any annotated voxel gets no voxel term,
    as in ``DC_and_CE_loss``.

    Region training (``regions=True``, sigmoid outputs, target one-hot ``(B, R, *spatial)``): with
    ``ignore_label`` set (any value), the target's LAST channel is the ignore mask (nnU-Net's layout), removed
    before both terms and used as their ``loss_mask``. The default voxel term then is nnU-Net's masked BCE
    ``sum(bce * mask) / sum(mask)``, exactly as ``DC_and_BCE_loss`` computes it.

    Args:
        region: overlap loss called as ``region(net_output, target, loss_mask=mask, **region_kwargs)``, e.g.
            :class:`~nnunet_fracture.losses.PolyDice1Loss` or :class:`~nnunet_fracture.losses.FocalTverskyLoss`
            with the activation matching ``regions``.
        pixel: voxel loss called as ``pixel(net_output, target, loss_mask=mask)``, e.g.
            :class:`~nnunet_fracture.losses.FocalLoss`; ``None`` = nnU-Net's cross entropy / BCE.
        weight_region: weight of the overlap term, >= 0 (nnU-Net: 1).
        weight_pixel: weight of the voxel term, >= 0 (nnU-Net: 1).
        regions: region (sigmoid) training instead of label (softmax) training.
        ignore_label: nnU-Net's ignore label (``label_manager.ignore_label``) or ``None``.

    Raises:
        ValueError: for a negative or non-finite weight, or both weights 0.
    """

    def __init__(self, region: nn.Module, pixel: Optional[nn.Module] = None, weight_region: float = 1.0,
                 weight_pixel: float = 1.0, regions: bool = False, ignore_label: Optional[int] = None) -> None:
        super().__init__()
        self.weight_region = _check_weight("weight_region", weight_region)
        self.weight_pixel = _check_weight("weight_pixel", weight_pixel)
        if self.weight_region == 0 and self.weight_pixel == 0:
            raise ValueError("weight_region and weight_pixel are both 0; at least one term must count")
        self.region = region
        self.regions = bool(regions)
        self.ignore_label = ignore_label
        if pixel is None:
            if self.regions:
                pixel_default = nn.BCEWithLogitsLoss(reduction="none" if ignore_label is not None else "mean")
            else:
                pixel_default = RobustCrossEntropyLoss(ignore_index=ignore_label if ignore_label is not None
                                                       else -100)
            self.pixel, self.pixel_is_nnunet = pixel_default, True
        else:
            self.pixel, self.pixel_is_nnunet = pixel, False

    def forward(self, net_output: torch.Tensor, target: torch.Tensor, **region_kwargs) -> torch.Tensor:
        """
        Args:
            net_output: ``(B, C, *spatial)`` logits.
            target: label map ``(B, 1, *spatial)`` (labels) or one-hot ``(B, R[+1], *spatial)`` (regions).
            **region_kwargs: passed on to the region term (e.g. ``epsilon`` of PolyDice-1).

        Returns:
            float32 scalar.

        Raises:
            ValueError: quoting both shapes if a label-map target has more than one channel.
        """
        if self.regions:
            return self._regions(net_output, target, region_kwargs)
        if target.ndim != net_output.ndim or target.shape[1] != 1:
            raise ValueError(f"label training needs a label map target (B, 1, *spatial); got target shape "
                             f"{tuple(target.shape)} for net_output shape {tuple(net_output.shape)}")
        mask, target_region, any_valid = None, target, True
        if self.ignore_label is not None:
            mask = target != self.ignore_label
            target_region = torch.where(mask, target, 0)
            any_valid = bool(mask.any())
        total = net_output.new_zeros((), dtype=torch.float32)
        if self.weight_region != 0:
            total = total + self.weight_region * self.region(net_output, target_region, loss_mask=mask,
                                                             **region_kwargs)
        if self.weight_pixel != 0 and any_valid:
            if self.pixel_is_nnunet:
                value = self.pixel(net_output.float(), target[:, 0])
            else:
                value = self.pixel(net_output, target_region, loss_mask=mask)
            total = total + self.weight_pixel * value
        return total

    def _regions(self, net_output: torch.Tensor, target: torch.Tensor, region_kwargs: dict) -> torch.Tensor:
        mask = None
        if self.ignore_label is not None:
            mask = ~target[:, -1:].bool()
            target = target[:, :-1]
        total = net_output.new_zeros((), dtype=torch.float32)
        if self.weight_region != 0:
            total = total + self.weight_region * self.region(net_output, target, loss_mask=mask, **region_kwargs)
        if self.weight_pixel != 0:
            if self.pixel_is_nnunet:
                x, y = net_output.float(), target.float()
                if mask is not None:
                    value = (self.pixel(x, y) * mask).sum() / torch.clip(mask.sum(), min=1e-8)
                else:
                    value = self.pixel(x, y)
            else:
                value = self.pixel(net_output, target, loss_mask=mask)
            total = total + self.weight_pixel * value
        return total

    def extra_repr(self) -> str:
        return (f"weight_region={self.weight_region}, weight_pixel={self.weight_pixel}, regions={self.regions}, "
                f"ignore_label={self.ignore_label}")
