"""MC-Dropout difficulty per training case, and the per-image PolyDice-1 ``eps1`` derived from it.

Used by ``nnUNetTrainerPolyDiceMCD``; everything here works on plain networks, arrays and dictionaries.

Method (research plan: every ``M`` epochs, ``N`` stochastic passes with dropout ``p``; defaults 10, 10, 0.5):

1. **Dropout in the network** - :func:`with_dropout` returns a copy of nnU-Net's configuration whose
   ``dropout_op`` is :class:`MCDropout` (element-wise dropout after every convolution of the plans' U-Net).
   Training runs it at its own rate; :func:`mc_dropout_mode` switches the whole network to eval mode, turns only
   the :class:`MCDropout` modules back on and sets their rate to the MC rate for the passes. Other dropout
   modules (e.g. a classification head's) and normalisation layers stay in eval mode.
2. **What the passes run on** - a full sliding window over every case ``N`` times is far too slow at real scale.
   Each case instead gets a fixed set of ``patches_per_case`` patches of the training patch size, drawn once
   from a seed derived from ``(seed, case)`` (:func:`draw_patch_boxes`): centred on foreground voxels (nnU-Net's
   ``class_locations``) where the case has foreground, uniformly placed otherwise. The same patches are used
   in every round, so the trajectory of a case's difficulty reflects the network, not the sampling. Patches
   come from the preprocessed data, without augmentation.
3. **Difficulty** - per voxel, the variance over the ``N`` passes of the foreground probability (mean over
   foreground channels; population variance), aggregated per case (:func:`aggregate_difficulty`): ``"mean"``
   over all patch voxels, ``"foreground"`` over voxels whose mean foreground probability is >= 0.5 (falls back to
   ``"mean"`` when the model predicts no foreground there), or ``"top_percent"``: the mean of the highest
   ``top_percent`` % of voxel variances.
4. **eps1 by rank** - :func:`epsilon_by_rank` maps the assessed cases' difficulties linearly by rank (ties share
   their mean rank) onto ``[eps_min, eps_max]``; ``direction="harder_larger"`` gives the hardest case
   ``eps_max``. Cases without a difficulty (before the first round, or never assessed) get the midpoint.
5. **Budget** - a round assesses ``cases_per_round`` cases (cycling through a fixed seeded order of the eligible
   cases, so every case is visited), ``patches_per_case`` patches each, optionally only cases with foreground.
   :func:`auto_cases_per_round` sizes it from an overhead target: a training sample (forward, backward,
   augmentation) costs about ``TRAIN_COST_IN_FORWARDS`` = 2 forward passes (measured 2.5 on CPU with tiny plans,
   ``benchmarks/mcd_overhead.py``; 2 leaves a margin), so ``N * patches * cases`` forward passes per ``M`` epochs
   of ``iterations * batch_size`` training samples cost about ``N * patches * cases / (2 * M * iterations *
   batch_size)`` of the training time. The trainer logs the measured share after every round.
"""
from __future__ import annotations

import csv
import math
import zlib
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

AGGREGATES = ("mean", "foreground", "top_percent")
DIRECTIONS = ("harder_larger", "harder_smaller")
MC_DROPOUT_OP = "nnunet_fracture.training.mc_dropout.MCDropout"
#: cost of one training sample (forward + backward + augmentation) in forward passes, for the budget estimate
TRAIN_COST_IN_FORWARDS = 2.0


class MCDropout(nn.Dropout):
    """Element-wise dropout placed in the U-Net through the plans' ``dropout_op``.

    A class of its own so that MC passes change exactly these modules (and no dropout a network has for other
    reasons). Element-wise rather than channel dropout: the U-Net's first stages have few channels (4-32), and
    dropping whole channels of them at p = 0.5 destroys the input rather than sampling a posterior.
    """


def with_dropout(configuration_manager, p: float = 0.0, dropout_op: str = MC_DROPOUT_OP):
    """A copy of nnU-Net's ``ConfigurationManager`` whose architecture uses ``dropout_op`` at rate ``p``.

    ``configuration_manager.network_arch_init_kwargs`` is the live plans dictionary; it is not modified.

    Raises:
        ValueError: if the plans' network takes no ``dropout_op`` argument (not a dynamic-network-architectures
            U-Net), naming the network class.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    configuration = dict(configuration_manager.configuration)
    architecture = dict(configuration["architecture"])
    kwargs = dict(architecture["arch_kwargs"])
    if "dropout_op" not in kwargs:
        raise ValueError(f"the plans' network {architecture.get('network_class_name')!r} has no 'dropout_op' "
                         f"argument, so MC-Dropout cannot place dropout in it; use a dynamic-network-architectures "
                         f"U-Net (PlainConvUNet, ResidualEncoderUNet) or a network that accepts dropout_op")
    kwargs["dropout_op"] = dropout_op
    kwargs["dropout_op_kwargs"] = {"p": float(p), "inplace": False}
    requires_import = list(architecture.get("_kw_requires_import", ()))
    if "dropout_op" not in requires_import:
        requires_import.append("dropout_op")
    architecture.update(arch_kwargs=kwargs, _kw_requires_import=requires_import)
    configuration["architecture"] = architecture
    return ConfigurationManager(configuration)


def dropout_modules(network: nn.Module) -> list[MCDropout]:
    """The :class:`MCDropout` modules of ``network``."""
    return [m for m in network.modules() if isinstance(m, MCDropout)]


def set_dropout_rate(network: nn.Module, p: float) -> int:
    """Set the rate of every :class:`MCDropout` in ``network`` to ``p``; return how many there are.

    Raises:
        ValueError: if ``p`` is not in ``[0, 1)``.
    """
    check_rate("p", p)
    modules = dropout_modules(network)
    for m in modules:
        m.p = float(p)
    return len(modules)


def check_rate(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"{name} must be a dropout rate in [0, 1), got {p!r}")
    return float(p)


@contextmanager
def mc_dropout_mode(network: nn.Module, p: float) -> Iterator[int]:
    """Inside the block: ``network`` in eval mode except its :class:`MCDropout` modules, which drop at rate ``p``.

    Every module's training flag and every rate are restored afterwards. Yields the number of dropout modules.
    """
    check_rate("p", p)
    modes = {m: m.training for m in network.modules()}
    modules = dropout_modules(network)
    rates = [m.p for m in modules]
    try:
        network.eval()
        for m in modules:
            m.train()
            m.p = float(p)
        yield len(modules)
    finally:
        for m, rate in zip(modules, rates):
            m.p = rate
        for m, training in modes.items():
            m.training = training


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


def neutral_epsilon(eps_min: float, eps_max: float) -> float:
    """The ``eps1`` of a case without a difficulty: the middle of the range (the median rank's value)."""
    return (eps_min + eps_max) / 2.0


def epsilon_by_rank(difficulty: dict[str, float], eps_min: float, eps_max: float,
                    direction: str = "harder_larger") -> dict[str, float]:
    """``eps1`` per case from its difficulty's rank, linear over ``[eps_min, eps_max]``.

    The hardest case gets ``eps_max`` (``"harder_larger"``) or ``eps_min`` (``"harder_smaller"``); ties share
    their mean rank; a single case (or all tied) gets the midpoint. NaN difficulties are left out.

    Raises:
        ValueError: for an unknown direction or ``eps_min > eps_max``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not eps_min <= eps_max:
        raise ValueError(f"eps_min must be <= eps_max, got {eps_min!r} > {eps_max!r}")
    items = [(case, value) for case, value in difficulty.items() if value is not None and not math.isnan(value)]
    if not items:
        return {}
    if len(items) == 1:
        return {items[0][0]: neutral_epsilon(eps_min, eps_max)}
    from scipy.stats import rankdata

    ranks = rankdata([v for _, v in items], method="average") - 1  # 0 = easiest
    fraction = ranks / (len(items) - 1)
    if direction == "harder_smaller":
        fraction = 1 - fraction
    return {case: float(eps_min + (eps_max - eps_min) * f) for (case, _), f in zip(items, fraction)}


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


# --- the table ------------------------------------------------------------------------------------------------
class DifficultyTable:
    """Difficulty per (epoch of the round, case), plus the ``eps1`` in effect; checkpointable."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}

    def record(self, epoch: int, values: dict[str, float]) -> None:
        self.rows[int(epoch)] = {str(k): float(v) for k, v in values.items()}

    def latest(self) -> dict[str, float]:
        """Each case's most recent difficulty."""
        latest: dict[str, float] = {}
        for epoch in sorted(self.rows):
            latest.update(self.rows[epoch])
        return latest

    @property
    def cases(self) -> list[str]:
        return sorted({case for row in self.rows.values() for case in row})

    def state_dict(self) -> dict:
        return {"rows": {int(e): dict(r) for e, r in self.rows.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.rows = {int(e): {str(k): float(v) for k, v in r.items()} for e, r in (state or {}).get("rows", {}).items()}

    def write_csv(self, path: Path) -> None:
        """``epoch,<case>,<case>,...``: one row per round, empty where a case was not assessed."""
        cases = self.cases
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", *cases])
            for epoch in sorted(self.rows):
                row = self.rows[epoch]
                writer.writerow([epoch, *(repr(row[c]) if c in row else "" for c in cases)])

    def plot(self, path: Path, title: str = "MC-Dropout difficulty per case") -> None:
        """A PNG with one line per case: its difficulty over the epochs of the rounds."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5))
        for case in self.cases:
            points = [(e, r[case]) for e, r in sorted(self.rows.items()) if case in r]
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3, linewidth=1,
                    label=case)
        ax.set_xlabel("epoch")
        ax.set_ylabel("difficulty (MC-Dropout variance)")
        ax.set_title(title)
        if len(self.cases) <= 20:
            ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def write_epsilon_csv(path: Path, epsilon: dict[str, float]) -> None:
    """``case,epsilon``: the ``eps1`` in effect per case after the latest round."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "epsilon"])
        for case in sorted(epsilon):
            writer.writerow([case, repr(epsilon[case])])


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
