"""What the box-prior losses need from a trainer: millimetres turned into voxels, the patch back in HU, and the
size barrier's sharpness per epoch (:class:`~nnunet_fracture.losses.WeakBoxLoss`'s tightness, affinity and size
terms)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch


def margin_voxels(margin_mm: float, spacing: Sequence[float]) -> tuple[float, ...]:
    """The annotation margin in voxels per axis of a patch with ``spacing`` (mm, the patch's axis order)."""
    if not math.isfinite(margin_mm) or margin_mm < 0:
        raise ValueError(f"annotation_margin_mm must be a finite number >= 0, got {margin_mm!r}")
    return tuple(margin_mm / s for s in spacing)


def dilation_voxels(distance_mm: float, spacing: Sequence[float]) -> tuple[int, ...]:
    """Neighbour spacing in whole voxels per axis (at least 1) for neighbours ``distance_mm`` apart."""
    if not math.isfinite(distance_mm) or distance_mm <= 0:
        raise ValueError(f"affinity_dilation_mm must be a finite number > 0, got {distance_mm!r}")
    return tuple(max(1, int(round(distance_mm / s))) for s in spacing)


def hu_from_normalised(data: torch.Tensor, scheme: str, properties: Mapping[str, float]) -> torch.Tensor:
    """Undo nnU-Net's ``CTNormalization`` of one channel: ``HU = x * std + mean`` (the clipping to nnU-Net's
    0.5 / 99.5 percentiles stays).

    Args:
        data: the normalised CT channel, any shape.
        scheme: the channel's normalisation scheme in the plans (``configuration_manager.normalization_schemes``).
        properties: the plans' ``foreground_intensity_properties_per_channel`` entry of the channel.

    Raises:
        ValueError: if the channel was not normalised as CT, so HU cannot be recovered.
    """
    if scheme != "CTNormalization":
        raise ValueError(f"the HU affinity term needs a CT channel normalised with CTNormalization, but the plans "
                         f"normalise channel 0 with {scheme}; set lambda_affinity=0 for this dataset")
    return data.float() * float(properties["std"]) + float(properties["mean"])


def barrier_sharpness(epoch: int, t0: float, growth: float, t_max: float) -> float:
    """The size barrier's ``t`` at ``epoch``: ``min(t0 * growth**epoch, t_max)`` (Kervadec et al.: ``t0 = 5``,
    ``growth = 1.1``)."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if epoch * math.log(growth) >= math.log(t_max / t0):  # also avoids overflowing growth ** epoch
        return float(t_max)
    return t0 * growth ** epoch
