"""Bags of a box-number map and their aggregated fracture probability (the MIL pooling step).

Data contract shared by every weak-box loss in this package:

- ``logits``: float tensor ``(B, 1, *spatial)`` (2D or 3D), one sigmoid output channel, the fracture logit;
  ``P = sigmoid(logits)``. Everything is computed in float32, also for fp16/bf16 input (autocast).
- ``box_numbers``: tensor of the same shape holding integers (any integer dtype, or a float dtype holding
  integers, as nnU-Net's deep-supervision downsampling may produce): ``0`` = outside every box (certain
  background), ``n > 0`` = inside box ``n``. Box numbers are per sample, so a bag is the pair
  ``(sample index b, box number n)``: box 1 of sample 0 and box 1 of sample 1 are two bags. A patch may hold
  a whole box, part of one (the bag is whatever part is present) or none.

:func:`find_bags` turns a box-number map into a :class:`BoxBags` (one ``torch.unique`` over the inside voxels);
:func:`aggregate_bags` pools the probabilities of every bag at once with scatter operations, never a Python
loop over bags. All pools are computed in log space from the logits, so ``-log(aggregate)`` - the binary cross
entropy against 1 of the multiple-instance-learning loss - is finite and has a useful gradient even when every
voxel of a bag has a probability that underflows float32:

- ``"mean"``: ``mean P``; ``log mean P = logsumexp(logsigmoid(x)) - log(n)``. Suited to 3D boxes, which a
  fracture fills to a large part.
- ``"max"``: ``max P = sigmoid(max x)``; ``log max P = logsigmoid(max x) = -softplus(-max x)``. Suited to slice
  ranges, where the fracture is a small part of the bag. Only the arg-max voxel receives a gradient (ties
  share it evenly).
- ``"smooth_max"``: the alpha-softmax of Wang & Xia, "Bounding box tightness prior for weakly supervised image
  segmentation", MICCAI 2021: ``S = sum(p exp(alpha p)) / sum(exp(alpha p))``. ``S`` lies in
  ``[min P, max P]``, is close to the mean for small ``alpha`` and tends to the max as ``alpha`` grows, while
  every voxel receives a gradient. ``log S = logsumexp(logsigmoid(x) + alpha p) - logsumexp(alpha p)``.
"""
from __future__ import annotations

import math
from numbers import Real
from dataclasses import dataclass
from typing import Union

import torch

AGGREGATIONS = ("mean", "max", "smooth_max")
"""The bag pools understood by :func:`aggregate_bags` (and ``BoxMILLoss``)."""


@dataclass(frozen=True)
class BoxBags:
    """The bags of a batch, found once and shared by the losses of one deep-supervision scale.

    Attributes:
        shape: shape ``(B, 1, *spatial)`` of the box-number map the bags were found in.
        inside: bool ``(B, V)``, the flattened map ``box_numbers > 0`` (``V`` = voxels per sample).
        voxel_bag: long ``(M,)``, the bag index of each inside voxel, in the order of ``flat[inside]``.
        sample: long ``(K,)``, the sample index ``b`` of each bag.
        number: long ``(K,)``, the box number ``n`` of each bag. Bags are sorted by ``(b, n)``.
    """

    shape: tuple
    inside: torch.Tensor
    voxel_bag: torch.Tensor
    sample: torch.Tensor
    number: torch.Tensor

    @property
    def count(self) -> int:
        """Number of bags ``K`` in the batch."""
        return int(self.sample.numel())

    @property
    def outside(self) -> torch.Tensor:
        """bool ``(B, V)``, the flattened map ``box_numbers == 0`` (certain background)."""
        return ~self.inside


BoxNumbers = Union[torch.Tensor, BoxBags]


def check_fracture_logits(logits: torch.Tensor) -> None:
    """Check that ``logits`` is ``(B, 1, *spatial)``: one sigmoid fracture channel, one or more spatial axes.

    Raises:
        ValueError: naming the dataset the weak-box losses need, if not.
    """
    if logits.ndim < 3 or logits.shape[1] != 1:
        raise ValueError(
            "the weak-box losses expect one sigmoid fracture channel, logits of shape (B, 1, *spatial), "
            f"got logits of shape {tuple(logits.shape)}; train on a region-based dataset with one 'fracture' "
            "region, as written by `nnunet-fracture convert --weak box|slice`")


def check_weak_box_shapes(logits: torch.Tensor, box_numbers: BoxNumbers) -> None:
    """Check the data contract of the weak-box losses (see the module docstring).

    Raises:
        ValueError: if ``logits`` is not ``(B, 1, *spatial)`` (see :func:`check_fracture_logits`), or if
            ``box_numbers`` (or the map a :class:`BoxBags` was found in) has a different shape.
    """
    check_fracture_logits(logits)
    target_shape = tuple(box_numbers.shape)
    if target_shape != tuple(logits.shape):
        raise ValueError(f"box_numbers shape {target_shape} differs from logits shape "
                         f"{tuple(logits.shape)}; both must be (B, 1, *spatial)")


def checked_bags(logits: torch.Tensor, box_numbers: BoxNumbers) -> "BoxBags":
    """:func:`check_weak_box_shapes`, then the bags of ``box_numbers`` (found once, or passed through when they
    already are a :class:`BoxBags`)."""
    check_weak_box_shapes(logits, box_numbers)
    return box_numbers if isinstance(box_numbers, BoxBags) else find_bags(box_numbers)


def check_aggregation(mode: object, alpha: object) -> None:
    """Check a bag pool name and its smooth-max sharpness.

    Raises:
        ValueError: if ``mode`` is not one of :data:`AGGREGATIONS` or ``alpha`` is not a finite number > 0.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {mode!r}; expected one of {', '.join(map(repr, AGGREGATIONS))}")
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0 (smooth-max sharpness), got {alpha!r}")


def find_bags(box_numbers: torch.Tensor) -> BoxBags:
    """Find the bags ``(b, n)`` of a box-number map.

    Args:
        box_numbers: ``(B, 1, *spatial)`` map, 0 outside every box and ``n > 0`` inside box ``n``; any integer
            dtype, or a float dtype holding integers (rounded).

    Returns:
        The :class:`BoxBags` of the batch (``count == 0`` when no voxel is inside a box).

    Raises:
        ValueError: if the map has fewer than 3 axes or holds negative numbers.
    """
    if box_numbers.ndim < 3:
        raise ValueError(f"box_numbers must be (B, 1, *spatial), got shape {tuple(box_numbers.shape)}")
    numbers = box_numbers.detach()
    if numbers.is_floating_point():
        numbers = torch.round(numbers)
    numbers = numbers.reshape(numbers.shape[0], -1).long()
    low, high = torch.stack(torch.aminmax(numbers)).tolist() if numbers.numel() else (0, 0)  # one sync
    if low < 0:
        raise ValueError("box_numbers must be >= 0 (0 = outside every box, n > 0 = inside box n), "
                         f"found {low}")
    inside = numbers > 0
    inside_numbers = numbers[inside]
    if inside_numbers.numel() == 0:
        empty = inside_numbers.new_zeros(0)
        return BoxBags(tuple(box_numbers.shape), inside, empty, empty, empty)
    stride = high + 1
    samples = torch.arange(numbers.shape[0], device=numbers.device).unsqueeze(1).expand_as(numbers)[inside]
    keys, voxel_bag = torch.unique(samples * stride + inside_numbers, sorted=True, return_inverse=True)
    return BoxBags(tuple(box_numbers.shape), inside, voxel_bag, keys // stride, keys % stride)


def _segment_logsumexp(values: torch.Tensor, segment: torch.Tensor, count: int) -> torch.Tensor:
    """``logsumexp`` of ``values`` within each segment ``0..count-1`` (every segment non-empty)."""
    peak = values.new_full((count,), -math.inf).scatter_reduce(0, segment, values.detach(), "amax")
    shifted = torch.exp(values - peak[segment])
    # the peak voxel of each segment contributes exp(0) = 1, so the sum is >= 1 and its log is safe
    return torch.log(values.new_zeros(count).scatter_add(0, segment, shifted)) + peak


def aggregate_bags(logits: torch.Tensor, box_numbers: BoxNumbers, mode: str = "mean", alpha: float = 4.0,
                   log: bool = False) -> torch.Tensor:
    """Aggregated fracture probability of every bag ``(b, n)`` of the batch.

    Args:
        logits: ``(B, 1, *spatial)`` fracture logits (computed in float32 whatever their dtype).
        box_numbers: the ``(B, 1, *spatial)`` box-number map, or the :class:`BoxBags` already found in it.
        mode: ``"mean"``, ``"max"`` or ``"smooth_max"`` (see the module docstring).
        alpha: sharpness of ``"smooth_max"`` (ignored by the other modes); Wang & Xia (MICCAI 2021).
        log: return ``log`` of the aggregated probability (computed stably, never ``log(0)``).

    Returns:
        float32 ``(K,)``, one value per bag in the order of :class:`BoxBags` (sorted by sample, then box
        number); empty when the batch has no bag.

    Raises:
        ValueError: on an unknown ``mode``, a non-positive ``alpha`` or mismatching shapes.
    """
    check_aggregation(mode, alpha)
    bags = checked_bags(logits, box_numbers)
    x = logits.float().reshape(logits.shape[0], -1)[bags.inside]
    return pool_segments(x, bags.voxel_bag, bags.count, mode, alpha, log)


def pool_segments(x: torch.Tensor, segment: torch.Tensor, count: int, mode: str = "mean", alpha: float = 4.0,
                  log: bool = False) -> torch.Tensor:
    """Pool the probabilities ``sigmoid(x)`` of flat logits within segments (bags) ``0..count-1``.

    The building block of :func:`aggregate_bags` and of the plane bags of
    :mod:`nnunet_fracture.losses.plane_bags`: any grouping of voxels into bags, one scatter pass, no Python loop.

    Args:
        x: float ``(M,)`` logits of the voxels that belong to some bag.
        segment: long ``(M,)``, the bag of each voxel; every bag ``0..count-1`` must hold at least one voxel.
        count: number of bags.
        mode, alpha, log: as for :func:`aggregate_bags`.

    Returns:
        float ``(count,)``, the pooled probability (or its log) of each bag.
    """
    check_aggregation(mode, alpha)
    if x.shape != segment.shape:
        raise ValueError(f"x shape {tuple(x.shape)} differs from segment shape {tuple(segment.shape)}")
    x = x.float()
    if mode == "max":
        top = x.new_full((count,), -math.inf).scatter_reduce(0, segment, x, "amax")
        return torch.nn.functional.logsigmoid(top) if log else torch.sigmoid(top)
    log_p = torch.nn.functional.logsigmoid(x)
    if mode == "mean":
        sizes = torch.bincount(segment, minlength=count).to(x.dtype)
        log_pool = _segment_logsumexp(log_p, segment, count) - torch.log(sizes)
    else:
        weight_logits = alpha * torch.sigmoid(x)
        log_pool = _segment_logsumexp(log_p + weight_logits, segment, count) - \
            _segment_logsumexp(weight_logits, segment, count)
        log_pool = torch.clamp(log_pool, max=0.0)  # S <= max P <= 1; guards against rounding above 0
    return log_pool if log else torch.exp(log_pool)
