"""The weak-box loss ``L = sum_i lambda_i L_i`` over deep-supervision scales, the loss of the weak-box trainers.

``L1`` :class:`OutsideBackgroundLoss`, ``L2`` :class:`BoxMILLoss` (one bag per box), ``L3``
:class:`BoxContrastLoss`, ``L4`` :class:`ConsistencyLoss`, and the box priors :class:`BoxTightnessLoss` (plane
bags), :class:`BoxSizeLoss` (size bounds), :class:`BoxAffinityLoss` (HU affinity) and :class:`BoxSmoothnessLoss`
(smoothness inside boxes); see those modules and the data contract in :mod:`nnunet_fracture.losses.bag_aggregation`.
The bags of each scale are found once and shared.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Iterable, Optional, Sequence, Union

import torch
from torch import nn

from nnunet_fracture.losses.bag_aggregation import check_aggregation, check_weak_box_shapes, find_bags
from nnunet_fracture.losses.box_affinity import BoxAffinityLoss
from nnunet_fracture.losses.box_contrast import BoxContrastLoss
from nnunet_fracture.losses.box_mil import BoxMILLoss
from nnunet_fracture.losses.box_projection import BoxProjectionLoss
from nnunet_fracture.losses.box_size import BoxSizeLoss
from nnunet_fracture.losses.box_smoothness import BoxSmoothnessLoss
from nnunet_fracture.losses.box_tightness import BoxTightnessLoss
from nnunet_fracture.losses.outside_background import OutsideBackgroundLoss
from nnunet_fracture.losses.vae_consistency import ConsistencyLoss

Scales = Union[torch.Tensor, Sequence[torch.Tensor]]
COMPONENTS = ("outside", "mil", "contrast", "consistency", "tightness", "size", "affinity", "smoothness",
              "projection")
BAG_COMPONENTS = ("outside", "mil", "contrast", "tightness", "size", "projection")


def deep_supervision_weights(n_scales: int) -> list[float]:
    """nnU-Net's deep-supervision weights: scale ``i`` (0 = highest resolution) weighs ``1 / 2**i``, the
    lowest-resolution scale 0 when there is more than one scale, normalised to sum 1.

    For example 1 scale: ``[1]``; 2 scales: ``[1, 0]``; 3 scales: ``[2/3, 1/3, 0]``.
    """
    if n_scales < 1:
        raise ValueError(f"need at least one scale, got {n_scales}")
    weights = [1.0 / 2 ** i for i in range(n_scales)]
    if n_scales > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def _check_non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class WeakBoxLoss(nn.Module):
    """``L = lambda_outside L1 + lambda_mil L2 + lambda_contrast L3 + lambda_consistency L4
    + lambda_tightness L_tight + lambda_size L_size + lambda_affinity L_aff + lambda_smoothness L_smooth
    + lambda_projection L_proj``.

    ``forward`` takes single tensors or lists with one entry per deep-supervision scale, highest resolution
    first (what nnU-Net's network and data loader give with deep supervision on). Over scales the loss is
    ``sum_s w_s L(s)`` with nnU-Net's weights (:func:`deep_supervision_weights`) or the given
    ``scale_weights`` (normalised to sum 1). A scale of weight 0 is skipped, not computed - nnU-Net itself
    gives the lowest scale a weight of 1e-6 instead of 0 under DDP, so that every output head gets a gradient;
    a DDP trainer passes such ``scale_weights`` here. Terms are reduced over the local batch only.

    ``L4`` is computed only when ``error_map`` is given and ``lambda_consistency > 0``; ``error_map`` is the
    full-resolution map (the shape of the first scale's logits) and is resized to each lower scale by area
    averaging (``torch.nn.functional.interpolate(mode="area")``, i.e. adaptive average pooling), which keeps it
    in ``[0, 1]`` and matches the mean error over the voxels a low-resolution voxel covers.

    ``L_tight`` (:class:`BoxTightnessLoss`) takes the annotation margin at full resolution (``margin``, voxels per
    axis) and scales it to each lower scale by the ratio of the shapes; its solid-bag window
    (``tightness_window``) applies at the highest resolution only, where the lattice it removes lives.
    ``L_size`` (:class:`BoxSizeLoss`) reads its barrier sharpness from ``self.size.t``, which the trainer raises
    per epoch. ``L_aff`` (:class:`BoxAffinityLoss`) needs the CT in HU (``image_hu``, full resolution) and is
    computed at the highest resolution only, with weight 1; without ``image_hu`` it is skipped. ``L_smooth``
    (:class:`BoxSmoothnessLoss`) is likewise computed at the highest resolution only.

    After each ``forward``, ``last_components`` holds detached floats for logging: one per name of
    :data:`COMPONENTS` (each the scale-weighted sum ``sum_s w_s L_i(s)``, 0.0 when not computed) and ``total``.

    Args:
        lambda_outside: weight of L1 (outside voxels are background), >= 0.
        lambda_mil: weight of L2 (each box holds fracture), >= 0.
        lambda_contrast: weight of L3 (box above its sample's background by a margin), >= 0.
        lambda_consistency: weight of L4 (agree with the VAE error map), >= 0.
        aggregation: L2 bag pool, ``"mean"`` (3D boxes), ``"max"`` (slice ranges) or ``"smooth_max"``.
        alpha: smooth-max sharpness (> 0), Wang & Xia, MICCAI 2021.
        margin: L3 margin (>= 0).
        contrast_mode: L3 statistic, ``"max"`` or ``"mean"`` (box-level variant).
        lambda_tightness, lambda_size, lambda_affinity, lambda_smoothness: weights of the box priors, >= 0.
        tightness_margin: annotation margin in voxels per spatial axis at full resolution.
        tightness_beta, tightness_gamma, tightness_gamma_out: the focal weights of :class:`BoxTightnessLoss`.
        tightness_outside_top: the share of hardest outside voxels its outside term averages.
        tightness_rim: the box rim trained as background, voxels per spatial axis at full resolution (``None``:
            none).
        tightness_window: the plane bags score the mean P over cubes of this edge at the highest resolution
            (:class:`BoxTightnessLoss`'s ``window``; 1: single voxels).
        tightness_axes: the spatial axes whose planes are bags (``None``: every axis; the slice axis alone for
            slice ranges).
        lambda_projection: weight of ``L_proj`` (:class:`BoxProjectionLoss`, BoxInst's projection term), >= 0; it
            shares the tightness term's margin, window (highest resolution only) and axes.
        size_bounds: ``(lower, upper)`` share of a box the fracture fills, for :class:`BoxSizeLoss`.
        size_t: the size barrier's initial sharpness.
        affinity_theta, affinity_tau, affinity_dilation, affinity_border_pairs: :class:`BoxAffinityLoss`'s HU
            scale, threshold, neighbour spacing (voxels per axis) and whether pairs across a box border count.
        smoothness_dilation: :class:`BoxSmoothnessLoss`'s neighbour spacing (voxels per axis).
        scale_weights: one non-negative weight per deep-supervision scale, not all zero; ``None`` = nnU-Net's.
            Ignored for single-tensor input.

    Raises:
        ValueError: on any argument outside the ranges above.
    """

    def __init__(self, lambda_outside: float = 1.0, lambda_mil: float = 1.0, lambda_contrast: float = 0.1,
                 lambda_consistency: float = 0.0, aggregation: str = "mean", alpha: float = 4.0,
                 margin: float = 0.3, contrast_mode: str = "max",
                 scale_weights: Optional[Iterable[float]] = None, lambda_tightness: float = 0.0,
                 lambda_size: float = 0.0, lambda_affinity: float = 0.0,
                 tightness_margin: Sequence[float] = (1.0, 1.0, 1.0), tightness_beta: float = 0.25,
                 tightness_gamma: float = 2.0, tightness_gamma_out: float = 0.0, tightness_outside_top: float = 1.0,
                 tightness_rim: Optional[Sequence[float]] = None, tightness_window: int = 1,
                 tightness_axes: Optional[Sequence[int]] = None,
                 size_bounds: Sequence[float] = (0.02, 0.3), size_t: float = 5.0,
                 affinity_theta: float = 50.0, affinity_tau: float = 0.3,
                 affinity_dilation: Sequence[int] = (1, 1, 1), affinity_border_pairs: bool = False,
                 lambda_smoothness: float = 0.0, smoothness_dilation: Sequence[int] = (1, 1, 1),
                 lambda_projection: float = 0.0) -> None:
        super().__init__()
        self.lambdas = {
            "outside": _check_non_negative("lambda_outside", lambda_outside),
            "mil": _check_non_negative("lambda_mil", lambda_mil),
            "contrast": _check_non_negative("lambda_contrast", lambda_contrast),
            "consistency": _check_non_negative("lambda_consistency", lambda_consistency),
            "tightness": _check_non_negative("lambda_tightness", lambda_tightness),
            "size": _check_non_negative("lambda_size", lambda_size),
            "affinity": _check_non_negative("lambda_affinity", lambda_affinity),
            "smoothness": _check_non_negative("lambda_smoothness", lambda_smoothness),
            "projection": _check_non_negative("lambda_projection", lambda_projection),
        }
        check_aggregation(aggregation, alpha)
        if scale_weights is not None:
            if isinstance(scale_weights, (str, bytes)) or not isinstance(scale_weights, Iterable):
                raise ValueError(f"scale_weights must be a non-empty sequence of numbers, got {scale_weights!r}")
            scale_weights = tuple(_check_non_negative(f"scale_weights[{i}]", w) for i, w in enumerate(scale_weights))
            if not scale_weights:
                raise ValueError("scale_weights must be a non-empty sequence of numbers, got an empty one")
            if not any(scale_weights):
                raise ValueError(f"scale_weights must not be all zero, got {list(scale_weights)}")
        self.scale_weights = scale_weights
        self.outside = OutsideBackgroundLoss()
        self.mil = BoxMILLoss(aggregation=aggregation, alpha=alpha)
        self.contrast = BoxContrastLoss(margin=margin, mode=contrast_mode)
        self.consistency = ConsistencyLoss()
        self.tightness = BoxTightnessLoss(margin=tightness_margin, alpha=alpha, beta=tightness_beta,
                                          gamma=tightness_gamma, gamma_out=tightness_gamma_out,
                                          outside_top=tightness_outside_top, rim=tightness_rim,
                                          window=tightness_window, axes=tightness_axes)
        self.projection = BoxProjectionLoss(margin=tightness_margin, window=tightness_window, axes=tightness_axes)
        if isinstance(size_bounds, (str, bytes)) or len(size_bounds) != 2:
            raise ValueError(f"size_bounds must be (lower, upper), got {size_bounds!r}")
        self.size = BoxSizeLoss(lower=size_bounds[0], upper=size_bounds[1], t=size_t)
        self.affinity = BoxAffinityLoss(theta=affinity_theta, tau=affinity_tau, dilation=affinity_dilation,
                                        border_pairs=affinity_border_pairs)
        self.smoothness = BoxSmoothnessLoss(dilation=smoothness_dilation)
        self.last_components: dict[str, float] = {}

    def weights_for(self, n_scales: int) -> list[float]:
        """The normalised weight of each of ``n_scales`` scales (see the class docstring).

        Raises:
            ValueError: if ``scale_weights`` was given with a different length.
        """
        if self.scale_weights is None:
            return deep_supervision_weights(n_scales)
        if len(self.scale_weights) != n_scales:
            raise ValueError(f"scale_weights has {len(self.scale_weights)} entries but logits has {n_scales} "
                             "deep-supervision scales")
        total = sum(self.scale_weights)
        return [w / total for w in self.scale_weights]

    def forward(self, logits: Scales, box_numbers: Scales, error_map: Optional[Scales] = None,
                image_hu: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 1, *spatial)`` fracture logits, or a list of them, highest resolution first.
            box_numbers: the matching box-number map(s) (a list exactly when ``logits`` is a list).
            error_map: optional ``(B, 1, *spatial)`` normalised VAE reconstruction error at the resolution of
                the first scale (resized to the others by area averaging), or a list with one map per scale.
            image_hu: optional ``(B, 1, *spatial)`` CT in HU at the resolution of the first scale (for
                ``L_aff``).

        Returns:
            float32 scalar, the weighted total.

        Raises:
            ValueError: on a list / tensor mix, mismatching list lengths, a logits tensor with more than one
                channel, or a box-number or error map whose shape differs from its logits.
        """
        logit_scales, number_scales = self._as_scales(logits, box_numbers)
        for x, numbers in zip(logit_scales, number_scales):
            check_weak_box_shapes(x, numbers)
        weights = self.weights_for(len(logit_scales)) if isinstance(logits, (list, tuple)) else [1.0]
        use_consistency = error_map is not None and self.lambdas["consistency"] > 0
        error_scales = self._error_scales(error_map, logit_scales, weights) if use_consistency else None

        sums: dict[str, torch.Tensor] = {}
        full_shape = logit_scales[0].shape[2:]
        for s, (x, numbers, weight) in enumerate(zip(logit_scales, number_scales, weights)):
            if weight == 0:
                continue
            bags = find_bags(numbers) if any(self.lambdas[k] > 0 for k in BAG_COMPONENTS) else None
            terms = {}
            factor = [n / f for n, f in zip(x.shape[2:], full_shape)]  # this scale's share of full resolution
            if self.lambdas["tightness"] > 0:
                terms["tightness"] = self.tightness(x, bags, [m * f for m, f in zip(self.tightness.margin, factor)],
                                                    [r * f for r, f in zip(self.tightness.rim, factor)],
                                                    window=self.tightness.window if s == 0 else 1)
            if self.lambdas["projection"] > 0:
                terms["projection"] = self.projection(x, bags, [m * f for m, f in zip(self.projection.margin, factor)],
                                                      window=self.projection.window if s == 0 else 1)
            if self.lambdas["size"] > 0:
                terms["size"] = self.size(x, bags)
            if self.lambdas["outside"] > 0:
                terms["outside"] = self.outside(x, bags)
            if self.lambdas["mil"] > 0:
                terms["mil"] = self.mil(x, bags)
            if self.lambdas["contrast"] > 0:
                terms["contrast"] = self.contrast(x, bags)
            if use_consistency:
                terms["consistency"] = self.consistency(x, error_scales[s])
            for name, value in terms.items():
                sums[name] = sums[name] + weight * value if name in sums else weight * value
        if self.lambdas["affinity"] > 0 and image_hu is not None:
            sums["affinity"] = self.affinity(logit_scales[0], number_scales[0], image_hu)
        if self.lambdas["smoothness"] > 0:
            sums["smoothness"] = self.smoothness(logit_scales[0], number_scales[0])

        if sums:
            total = sum(self.lambdas[name] * value for name, value in sums.items())
        else:  # every lambda 0: a zero that stays connected to the graph
            total = logit_scales[0].float().sum() * 0.0
        values = torch.stack([sums[name].detach() if name in sums else total.new_zeros(()).detach()
                              for name in COMPONENTS] + [total.detach()]).tolist()
        self.last_components = dict(zip(COMPONENTS + ("total",), values))
        return total

    @staticmethod
    def _as_scales(logits: Scales, box_numbers: Scales) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits_is_list = isinstance(logits, (list, tuple))
        numbers_is_list = isinstance(box_numbers, (list, tuple))
        if logits_is_list != numbers_is_list:
            describe = {True: "a list of scales", False: "a single tensor"}
            raise ValueError(f"logits is {describe[logits_is_list]} but box_numbers is "
                             f"{describe[numbers_is_list]}; pass both as lists (deep supervision) or both as "
                             "tensors")
        if not logits_is_list:
            return [logits], [box_numbers]
        if len(logits) == 0:
            raise ValueError("logits is an empty list; expected one tensor per deep-supervision scale")
        if len(logits) != len(box_numbers):
            raise ValueError(f"logits has {len(logits)} deep-supervision scales but box_numbers has "
                             f"{len(box_numbers)}")
        return list(logits), list(box_numbers)

    @staticmethod
    def _error_scales(error_map: Scales, logit_scales: list[torch.Tensor],
                      weights: list[float]) -> list[Optional[torch.Tensor]]:
        if isinstance(error_map, (list, tuple)):
            if len(error_map) != len(logit_scales):
                raise ValueError(f"error_map has {len(error_map)} scales but logits has {len(logit_scales)}")
            return list(error_map)
        first = logit_scales[0]
        if tuple(error_map.shape) != tuple(first.shape):
            raise ValueError(f"error_map shape {tuple(error_map.shape)} differs from the first (highest "
                             f"resolution) logits shape {tuple(first.shape)}; both must be (B, 1, *spatial)")
        error_map = error_map.detach().float()
        scales: list[Optional[torch.Tensor]] = []
        for x, weight in zip(logit_scales, weights):
            if weight == 0:
                scales.append(None)
            elif tuple(x.shape[2:]) == tuple(error_map.shape[2:]):
                scales.append(error_map)
            else:
                scales.append(torch.nn.functional.interpolate(error_map, size=tuple(x.shape[2:]), mode="area"))
        return scales

    def extra_repr(self) -> str:
        lambdas = ", ".join(f"lambda_{k}={v}" for k, v in self.lambdas.items() if v)
        return f"{lambdas}, scale_weights={self.scale_weights}"
