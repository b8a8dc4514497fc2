"""Box-aware online validation for weak-box trainers.

nnU-Net's online validation reports a "pseudo dice" of the thresholded prediction against the training labels.
Against boxes that number rewards painting boxes, so weak-box trainers report, per validation epoch and pooled
over all validation patches (:class:`~nnunet_fracture.evaluation.box_metrics.BoxStats`):

- ``box_mass_inside``: the fraction of predicted probability mass inside boxes;
- ``box_hit_rate``: the share of boxes (per patch: the part of a box the patch holds) whose maximum P reaches
  the threshold;
- ``outside_fp_rate``: the share of voxels outside every box with P at or above the threshold.

nnU-Net picks ``checkpoint_best.pth`` by an exponential moving average of ``mean_fg_dice``; weak-box trainers
log the :func:`box_score` there (and say so in the log): the harmonic mean of mass inside and hit rate, 0 when
either is undefined. :class:`BoxAwareValidation` is the trainer mixin.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from nnunet_fracture.evaluation.box_metrics import BoxStats

#: keys added to nnU-Net's logger, one value per epoch
LOG_KEYS = ("box_mass_inside", "box_hit_rate", "outside_fp_rate")
_COUNT_FIELDS = ("mass_inside", "mass_total", "boxes_hit", "boxes_total", "outside_positive", "outside_total")


def batch_counts(probabilities: torch.Tensor, box_numbers: torch.Tensor, threshold: float) -> np.ndarray:
    """Summable counts (see :data:`_COUNT_FIELDS`) of one validation batch: ``probabilities`` and
    ``box_numbers`` are (B, 1, *spatial); each sample's boxes count separately."""
    p = probabilities.detach().float().cpu().numpy()
    ids = box_numbers.detach().cpu().numpy()
    total = BoxStats()
    for b in range(p.shape[0]):
        total = total + BoxStats.from_arrays(p[b, 0], ids[b, 0], threshold)
    return np.array([getattr(total, f) for f in _COUNT_FIELDS], dtype=np.float64)


def stats_from_counts(counts: np.ndarray) -> BoxStats:
    """Pool counts stacked as (n, 6) (or one row) back into a :class:`BoxStats`."""
    summed = np.asarray(counts, dtype=np.float64).reshape(-1, len(_COUNT_FIELDS)).sum(axis=0)
    return BoxStats(**dict(zip(_COUNT_FIELDS, summed.tolist())))


def box_score(stats: BoxStats) -> float:
    """Harmonic mean of mass inside boxes and box hit rate; 0 where either is undefined or both are 0."""
    mass, hit = stats.mass_inside_fraction, stats.hit_rate
    if math.isnan(mass) or math.isnan(hit) or mass + hit == 0:
        return 0.0
    return 2 * mass * hit / (mass + hit)


def ensure_log_keys(logging: dict, epoch: int) -> None:
    """Add :data:`LOG_KEYS` to nnU-Net's logger dict (e.g. after resuming from a stock checkpoint), padded with
    NaN up to ``epoch`` so that all lists keep nnU-Net's one-value-per-epoch length."""
    for key in LOG_KEYS:
        values = logging.setdefault(key, [])
        values.extend([math.nan] * max(0, epoch - len(values)))


def validation_note(trainer_name: str, threshold: float) -> str:
    """The training log's line on what a weak-box trainer's online validation reports."""
    return (f"{trainer_name}: online validation reports mass inside boxes, box hit rate and outside false-positive "
            f"rate at P >= {threshold}; the 'Pseudo dice' lines show the box score (harmonic mean of mass inside and "
            f"hit rate), which also selects checkpoint_best")


def finish_validation_epoch(trainer, val_outputs: list[dict]) -> BoxStats:
    """A weak-box trainer's ``on_validation_epoch_end``: pool the epoch's ``box_counts`` and losses over the
    validation steps (and DDP ranks), log the :func:`box_score` as nnU-Net's pseudo Dice, the mean loss and the
    :data:`LOG_KEYS`, and write one log line. Returns the pooled statistics."""
    from nnunet_fracture.training.distributed import gather_concatenated

    losses = np.array([o["loss"] for o in val_outputs], dtype=np.float64)
    counts = np.stack([o["box_counts"] for o in val_outputs]).sum(axis=0)
    losses, counts = gather_concatenated(losses, counts[None], enabled=trainer.is_ddp)
    stats = stats_from_counts(counts)
    score = box_score(stats)
    epoch, logger = trainer.current_epoch, trainer.logger
    ensure_log_keys(logger.local_logger.my_fantastic_logging, epoch)
    logger.log("mean_fg_dice", score, epoch)
    logger.log("dice_per_class_or_region", [score], epoch)
    logger.log("val_losses", float(losses.mean()), epoch)
    for key, value in zip(LOG_KEYS, (stats.mass_inside_fraction, stats.hit_rate, stats.outside_fp_rate)):
        logger.log(key, value, epoch)
    trainer.print_to_log_file(
        f"box-aware validation: mass inside boxes {stats.mass_inside_fraction:.4f}, box hit rate "
        f"{stats.hit_rate:.4f} ({int(stats.boxes_hit)}/{int(stats.boxes_total)}), outside FP rate "
        f"{stats.outside_fp_rate:.2e}, box score {score:.4f}")
    return stats


def box_validation_step(trainer, batch: dict, extra: dict) -> dict:
    """A weak-box trainer's ``validation_step``: the network on the batch, the loss (with ``extra`` inputs, see
    :mod:`nnunet_fracture.training.loss_inputs`) and the :func:`batch_counts` of the full-resolution output at
    ``trainer.validation_threshold``."""
    from nnunet_fracture.training.loss_inputs import loss_called_with

    data = batch["data"].to(trainer.device, non_blocking=True)
    target = batch["target"]
    target = [t.to(trainer.device, non_blocking=True) for t in target] if isinstance(target, list) \
        else target.to(trainer.device, non_blocking=True)
    autocast = torch.autocast(trainer.device.type) if trainer.device.type == "cuda" else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        output = trainer.network(data)
        with loss_called_with(trainer, extra):
            loss = trainer.loss(output, target)
    if isinstance(output, (list, tuple)):
        output, target = output[0], target[0]
    counts = batch_counts(torch.sigmoid(output.float()), target, trainer.validation_threshold)
    return {"loss": loss.detach().cpu().numpy(), "box_counts": counts}


class BoxAwareValidation:
    """Trainer mixin: nnU-Net's online validation replaced by the box-aware one (module docstring). The trainer
    provides ``validation_threshold`` and ``extra_loss_inputs(batch)``, the loss's inputs beyond output and target
    (:mod:`nnunet_fracture.training.loss_inputs`)."""

    def validation_step(self, batch: dict) -> dict:
        return box_validation_step(self, batch, self.extra_loss_inputs(batch))

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        finish_validation_epoch(self, val_outputs)
