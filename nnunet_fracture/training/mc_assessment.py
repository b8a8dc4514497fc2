"""MC-Dropout assessment of training cases: fixed patches, ``N`` stochastic passes, a difficulty per case, and
the budget of cases per round (the method: :mod:`nnunet_fracture.training.mc_dropout`)."""
from __future__ import annotations

import math
import zlib
from contextlib import nullcontext
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from nnunet_fracture.training.mc_dropout import mc_dropout_mode

AGGREGATES = ("mean", "foreground", "top_percent")
#: cost of one training sample (forward + backward + augmentation) in forward passes, for the budget estimate
TRAIN_COST_IN_FORWARDS = 2.0


# --- patches ---------------------------------------------------------------------------------------------------
def case_seed(seed: int, case: str) -> int:
    """A seed for ``case`` that depends only on ``seed`` and the case identifier (stable across runs and ranks)."""
    return (zlib.crc32(case.encode("utf-8")) ^ (int(seed) * 2654435761)) % (2 ** 32)


def foreground_locations(class_locations: Optional[dict]) -> Optional[np.ndarray]:
    """All foreground voxel locations nnU-Net stored for a case (``(K, 1 + dim)`` rows ``(channel, *index)``), or
    ``None`` when it has none. The annotated-voxel key of the ignore label (a tuple starting with -1) is skipped."""
    if not class_locations:
        return None
    arrays = [np.asarray(v) for k, v in class_locations.items()
              if not (isinstance(k, tuple) and len(k) and k[0] == -1) and len(v) > 0]
    return np.concatenate(arrays, axis=0) if arrays else None


def draw_patch_boxes(shape: Sequence[int], patch_size: Sequence[int], locations: Optional[np.ndarray],
                     n_patches: int, seed: int) -> list[tuple[int, ...]]:
    """Lower corners of ``n_patches`` patches of ``patch_size`` in a case of spatial ``shape``.

    With foreground ``locations`` each patch is centred on a foreground voxel drawn with ``seed``; otherwise it
    is placed uniformly. Corners keep the patch inside the case where the case is at least as large as the
    patch (otherwise the patch is centred and padded when cropped).
    """
    rng = np.random.default_rng(seed)
    shape, patch = np.asarray(shape, dtype=int), np.asarray(patch_size, dtype=int)
    upper = shape - patch  # may be negative: case smaller than the patch
    boxes = []
    for _ in range(n_patches):
        if locations is not None and len(locations):
            centre = np.asarray(locations[rng.integers(len(locations))][1:], dtype=int)
            corner = centre - patch // 2
        else:
            corner = np.array([rng.integers(0, u + 1) if u > 0 else 0 for u in upper])
        corner = np.where(upper >= 0, np.clip(corner, 0, np.maximum(upper, 0)), upper // 2)
        boxes.append(tuple(int(c) for c in corner))
    return boxes


def crop_patches(data, boxes: Sequence[Sequence[int]], patch_size: Sequence[int]) -> np.ndarray:
    """``(P, C, *patch_size)`` float32 crops of ``data`` (``(C, *spatial)``, numpy or blosc2), zero-padded."""
    from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd

    crops = []
    for corner in boxes:
        bbox = [[int(c), int(c) + int(s)] for c, s in zip(corner, patch_size)]
        crops.append(np.asarray(crop_and_pad_nd(data, bbox, 0), dtype=np.float32))
    return np.stack(crops)


# --- passes and difficulty ------------------------------------------------------------------------------------
def foreground_probability(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """``(B, K, *spatial)`` foreground probabilities: softmax channels 1.. (``"softmax"``) or every sigmoid
    channel (``"sigmoid"``), float32."""
    x = logits.float()
    if activation == "softmax":
        return torch.softmax(x, dim=1)[:, 1:]
    if activation == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")


@torch.no_grad()
def mc_statistics(network: nn.Module, patches: torch.Tensor, n_passes: int, p: float, activation: str,
                  batch_size: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``n_passes`` stochastic passes over each patch; return per-voxel ``(variance, mean)`` of the
    foreground probability, each ``(P, *spatial)`` (mean over foreground channels; population variance).

    The ``N`` passes of a patch go through the network as copies in one batch (independent dropout masks per
    copy; instance norm is per sample), ``batch_size`` copies at a time (0 = ``n_passes``). With deep
    supervision on, the highest-resolution output is used.

    Raises:
        ValueError: for ``n_passes`` < 2 or a bad rate.
    """
    if n_passes < 2:
        raise ValueError(f"n_passes must be >= 2 to give a variance, got {n_passes}")
    batch_size = batch_size or n_passes
    variances, means = [], []
    device = next(network.parameters()).device
    autocast = torch.autocast(device.type, enabled=True) if device.type == "cuda" else nullcontext()
    with mc_dropout_mode(network, p):
        for patch in patches:
            total, total_sq, done = None, None, 0
            while done < n_passes:
                n = min(batch_size, n_passes - done)
                x = patch.to(device, non_blocking=True)[None].expand(n, *patch.shape).contiguous()
                with autocast:
                    out = network(x)
                if isinstance(out, (list, tuple)):
                    out = out[0]
                prob = foreground_probability(out, activation)  # (n, K, *spatial)
                s, sq = prob.sum(0), (prob * prob).sum(0)  # running sums per channel and voxel
                total = s if total is None else total + s
                total_sq = sq if total_sq is None else total_sq + sq
                done += n
            mean_c = total / n_passes
            variance_c = (total_sq / n_passes - mean_c * mean_c).clamp_min(0.0)
            variances.append(variance_c.mean(0).cpu())
            # probability of any foreground: the sum of softmax channels, the largest sigmoid (region) channel
            means.append((mean_c.sum(0).clamp_max(1.0) if activation == "softmax" else mean_c.amax(0)).cpu())
    return torch.stack(variances), torch.stack(means)


def aggregate_difficulty(variance: torch.Tensor, mean_foreground: torch.Tensor, how: str = "mean",
                         top_percent: float = 1.0) -> float:
    """One difficulty value of a case from its voxel variances (see the module docstring for ``how``).

    Raises:
        ValueError: for an unknown ``how`` or a ``top_percent`` outside ``(0, 100]``.
    """
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}")
    v = variance.reshape(-1).double()
    if how == "mean":
        return float(v.mean())
    if how == "foreground":
        predicted = mean_foreground.reshape(-1) >= 0.5
        return float(v[predicted].mean()) if bool(predicted.any()) else float(v.mean())
    if not 0 < top_percent <= 100:
        raise ValueError(f"top_percent must be in (0, 100], got {top_percent!r}")
    k = max(1, int(math.ceil(v.numel() * top_percent / 100.0)))
    return float(torch.topk(v, k).values.mean())


def auto_cases_per_round(max_overhead: float, every: int, iterations: int, batch_size: int, n_passes: int,
                         patches_per_case: int) -> int:
    """Cases per round that keep the estimated MC overhead at ``max_overhead`` of the training time (>= 1)."""
    budget = max_overhead * TRAIN_COST_IN_FORWARDS * every * iterations * batch_size
    return max(1, int(budget // (n_passes * patches_per_case)))


def cases_for_round(eligible: Sequence[str], round_index: int, per_round: int, seed: int) -> list[str]:
    """The cases of round ``round_index``: consecutive chunks of one fixed seeded order of ``eligible``, wrapping
    around, so every case is assessed once per ``ceil(len / per_round)`` rounds. ``per_round`` <= 0 = all."""
    cases = sorted(eligible)
    if per_round <= 0 or per_round >= len(cases):
        return cases
    order = [cases[i] for i in np.random.default_rng(seed).permutation(len(cases))]
    start = (round_index * per_round) % len(order)
    chunk = (order + order)[start:start + per_round]
    return sorted(chunk)


# --- one round ------------------------------------------------------------------------------------------------
def has_foreground(properties: dict) -> bool:
    """Whether nnU-Net's preprocessing found foreground voxels in a case (its ``class_locations``)."""
    return foreground_locations(properties.get("class_locations")) is not None


def assess_cases(network: nn.Module, dataset, cases: Sequence[str], patch_size: Sequence[int], n_passes: int,
                 p: float, activation: str, patches_per_case: int = 1, seed: int = 0, aggregate: str = "mean",
                 top_percent: float = 1.0, batch_size: int = 0) -> dict[str, float]:
    """The MC-Dropout difficulty of each of ``cases`` (see the module docstring).

    Args:
        network: the segmentation network (plain module: not DDP-wrapped).
        dataset: an nnU-Net dataset (``load_case(case) -> (data, seg, seg_prev, properties)``).
        cases: case identifiers to assess.
        patch_size: the training patch size.
        n_passes: stochastic passes ``N`` per patch (>= 2).
        p: MC dropout rate.
        activation: ``"softmax"`` (labels) or ``"sigmoid"`` (regions).
        patches_per_case: fixed patches per case.
        seed: base seed of the patch positions (combined with the case identifier).
        aggregate: ``"mean"``, ``"foreground"`` or ``"top_percent"``.
        top_percent: share of voxels for ``"top_percent"``.
        batch_size: copies per forward pass (0 = ``n_passes``).
    """
    values: dict[str, float] = {}
    for case in cases:
        data, _seg, _seg_prev, properties = dataset.load_case(case)
        locations = foreground_locations(properties.get("class_locations"))
        boxes = draw_patch_boxes(data.shape[1:], patch_size, locations, patches_per_case, case_seed(seed, case))
        patches = torch.from_numpy(crop_patches(data, boxes, patch_size))
        variance, mean = mc_statistics(network, patches, n_passes, p, activation, batch_size)
        values[case] = aggregate_difficulty(variance, mean, aggregate, top_percent)
    return values
