"""Multi-task loss of the classification-head trainers: ``L = w_cls * BCE(class logit, y) + w_seg * L_seg``.

``y`` says whether the patch (or slice) contains fracture, read from the segmentation target itself
(:func:`classification_target`), so no extra annotation is needed: any foreground voxel for masks, any box voxel
for weak boxes.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.loss import _Loss

Scales = Union[torch.Tensor, Sequence[torch.Tensor]]
_POOLS = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}


def classification_target(target: torch.Tensor, spatial_shape: Sequence[int],
                          ignore_label: Optional[int] = None) -> torch.Tensor:
    """Binary "contains fracture" targets of shape ``(b, 1, *spatial_shape)`` from a full-resolution target.

    A voxel counts as fracture when

    - ``target`` has one channel (label map, or box numbers of a weak-box dataset): ``target > 0`` and
      ``target != ignore_label``;
    - ``target`` has several channels (nnU-Net's one-hot regions, the ignore mask last when the dataset has an
      ignore label): any region channel is on and, with ``ignore_label`` not ``None``, the ignore channel is off.

    The voxel indicator is then max-pooled to ``spatial_shape``: ``(1, 1, 1)`` asks "any fracture in the patch";
    ``(S, 1, 1)`` asks it per slice.

    Args:
        target: (b, C, *spatial) integer, boolean or float target at full resolution.
        spatial_shape: the class logits' spatial shape (same number of axes as ``target``'s).
        ignore_label: the dataset's ignore label (``label_manager.ignore_label``), or ``None``.

    Returns:
        float32 tensor of 0/1, shape ``(b, 1, *spatial_shape)``.

    Raises:
        ValueError: ``spatial_shape`` has a different number of axes than ``target``'s spatial part.
    """
    spatial_shape = tuple(int(s) for s in spatial_shape)
    if target.ndim - 2 != len(spatial_shape) or len(spatial_shape) not in _POOLS:
        raise ValueError(f"target of shape {tuple(target.shape)} does not fit class logits with spatial shape "
                         f"{spatial_shape}: need (b, C, *spatial) with 1-3 spatial axes on both")
    if target.shape[1] == 1:
        foreground = target > 0
        if ignore_label is not None:
            foreground &= target != ignore_label
    else:
        regions = target[:, :-1] if ignore_label is not None else target
        foreground = (regions > 0).any(dim=1, keepdim=True)
        if ignore_label is not None:
            foreground &= ~(target[:, -1:] > 0)
    return _POOLS[len(spatial_shape)](foreground.float(), spatial_shape)


def _check_weight(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class ClassificationHeadLoss(_Loss):
    """``w_cls * BCE(class_logits, y) + w_seg * seg_loss(output, target)``, the loss of a Y-shaped multi-task
    network: a segmentation decoder and a classification branch sharing one encoder (Mehta et al., "Y-Net: Joint
    Segmentation and Classification for Diagnosis of Breast Biopsy Images", MICCAI 2018, arXiv:1806.01313).

    ``y`` comes from the highest-resolution target by :func:`classification_target`. ``seg_loss`` is any
    nnU-Net style loss taking ``(output, target)``, deep-supervision lists included (nnU-Net's
    ``DeepSupervisionWrapper(DC_and_CE_loss)``, :class:`~nnunet_fracture.losses.WeakBoxLoss`); it receives
    ``output`` and ``target`` unchanged.

    ``forward(output, target)`` has nnU-Net's two-argument form: the class logits come from ``class_logits``
    when given, else from the ``class_logits_source`` callable (a trainer passes one that reads them from its
    network after the forward pass). In eval mode the plugin's :class:`ClassificationHeadNetwork` returns the
    fused ``P_class x P_seg`` logits; the segmentation term then scores the fused prediction, which is what
    nnU-Net's validation loss reports.

    After each ``forward``, ``last_components`` holds detached floats ``classification`` (the BCE),
    ``segmentation`` and ``total``.

    Args:
        seg_loss: the segmentation loss.
        weight_cls: ``w_cls`` >= 0 (default 1.0).
        weight_seg: ``w_seg`` >= 0 (default 0.1).
        ignore_label: the dataset's ignore label, or ``None`` (see :func:`classification_target`).
        class_logits_source: callable returning the class logits of the last forward pass.
        reduction: ``"mean"`` (BCE averaged over samples / slices) or ``"sum"``.

    Raises:
        ValueError: a negative or non-finite weight, or an unknown reduction.
    """

    def __init__(self, seg_loss: nn.Module, weight_cls: float = 1.0, weight_seg: float = 0.1,
                 ignore_label: Optional[int] = None,
                 class_logits_source: Optional[Callable[[], torch.Tensor]] = None,
                 reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f'reduction must be "mean" or "sum", got {reduction!r}')
        super().__init__(reduction=reduction)
        self.weight_cls = _check_weight("weight_cls", weight_cls)
        self.weight_seg = _check_weight("weight_seg", weight_seg)
        self.seg_loss = seg_loss
        self.ignore_label = ignore_label
        self.class_logits_source = class_logits_source
        self.last_components: dict[str, float] = {}

    def forward(self, output: Scales, target: Scales, class_logits: Optional[torch.Tensor] = None,
                **seg_kwargs) -> torch.Tensor:
        """
        Args:
            output: segmentation logits (b, K, *spatial), or a list of them (deep supervision).
            target: the matching target(s); the first (highest resolution) gives the class targets.
            class_logits: (b, 1, *k) with each ``k`` 1 or a size; default ``class_logits_source()``.
            **seg_kwargs: passed on to ``seg_loss`` (e.g. ``error_map`` for the weak-box loss).

        Returns:
            scalar loss.

        Raises:
            ValueError: no class logits, or class logits whose batch size or number of axes differs from the
                target's.
        """
        if class_logits is None:
            if self.class_logits_source is None:
                raise ValueError("no class logits: pass class_logits or give the loss a class_logits_source")
            class_logits = self.class_logits_source()
        full = target[0] if isinstance(target, (list, tuple)) else target
        if class_logits.ndim != full.ndim or class_logits.shape[0] != full.shape[0] or class_logits.shape[1] != 1:
            raise ValueError(f"class logits of shape {tuple(class_logits.shape)} do not match the target of shape "
                             f"{tuple(full.shape)}: expected (b, 1, ...) with the target's batch size and number "
                             f"of axes")
        y = classification_target(full, class_logits.shape[2:], self.ignore_label)
        bce = F.binary_cross_entropy_with_logits(class_logits.float(), y, reduction=self.reduction)
        if self.weight_seg > 0:
            seg = self.seg_loss(output, target, **seg_kwargs)
            total = self.weight_cls * bce + self.weight_seg * seg
        else:
            seg = bce.new_zeros(())
            total = self.weight_cls * bce
        self.last_components = dict(zip(("classification", "segmentation", "total"),
                                         torch.stack([bce.detach(), seg.detach().float(),
                                                      total.detach().float()]).tolist()))
        return total

    def extra_repr(self) -> str:
        return f"weight_cls={self.weight_cls}, weight_seg={self.weight_seg}, ignore_label={self.ignore_label}"
