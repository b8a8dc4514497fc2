"""What a finished nnU-Net training logged about itself: its online pseudo Dice, and whether it collapsed.

nnU-Net's trainer scores a few validation patches after every epoch ("Pseudo dice" in its log) and keeps the values
in the checkpoint's ``logging["mean_fg_dice"]``: the mean over foreground classes of the Dice of the predicted
patch labels, NaN for an epoch whose validation patches hold no foreground. A model that has settled on predicting
nothing scores exactly 0 on every patch with foreground - the collapse seen in self-training rounds on sparse
pseudo-masks (:mod:`nnunet_fracture.losses.present_dice`).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

from nnunet_fracture.io.checkpoints import load_checkpoint

#: epochs at the end of training over which the pseudo Dice is summarised
LAST_EPOCHS = 10
#: pseudo Dice above which a training has started to learn (:func:`learning_onset`)
ONSET_DICE = 0.05
_PSEUDO_DICE_LINE = re.compile(r"Pseudo dice \[(.*)\]")
_NUMBER = re.compile(r"nan|[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def logged_pseudo_dice(checkpoint: Path | str) -> list[float]:
    """The per-epoch pseudo Dice (``logging["mean_fg_dice"]``) of an nnU-Net checkpoint (NaN where not scored).

    Read without unpickling code (:func:`~nnunet_fracture.io.checkpoints.load_checkpoint`).

    Raises:
        ValueError: naming the file when it is not an nnU-Net checkpoint with a training log
            (:class:`~nnunet_fracture.io.checkpoints.UntrustedCheckpointError` when it asks pickle for more than an
            nnU-Net checkpoint holds).
    """
    try:
        values = load_checkpoint(checkpoint)["logging"]["mean_fg_dice"]
    except (OSError, RuntimeError, EOFError, KeyError, TypeError) as error:
        raise ValueError(f"{checkpoint} is not an nnU-Net checkpoint with a training log ({error!r}). Fix: pass "
                         f"the checkpoint_final.pth that nnUNetv2_train wrote.") from None
    return [float(v) for v in values]


def pseudo_dice_summary(pseudo_dice: Sequence[float], last: int = LAST_EPOCHS) -> dict:
    """``{"pseudo_dice_last_epochs": mean, "collapsed": bool}`` over the ``last`` epochs, NaN epochs left out.

    ``collapsed`` is True when every scored epoch among them has pseudo Dice 0 (the model marks no foreground
    voxel of any validation patch that holds some); both are ``None`` when none of them was scored.
    """
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last!r}")
    scored = [v for v in pseudo_dice[-last:] if not math.isnan(v)]
    if not scored:
        return {"pseudo_dice_last_epochs": None, "collapsed": None}
    return {"pseudo_dice_last_epochs": sum(scored) / len(scored), "collapsed": max(scored) == 0.0}


def collapse_summary(checkpoint: Path | str, last: int = LAST_EPOCHS) -> dict:
    """:func:`pseudo_dice_summary` of ``checkpoint``'s logged pseudo Dice."""
    return pseudo_dice_summary(logged_pseudo_dice(checkpoint), last)


def pseudo_dice_in_log(text: str) -> list[float]:
    """The per-epoch pseudo Dice of an nnU-Net ``training_log_*.txt`` (its "Pseudo dice [...]" lines, the mean over
    foreground classes; NaN where no class was scored), for trainings whose checkpoint a later run replaced.

    Reads nnU-Net's per-class list as NumPy 1 prints it (``[0.0594, nan]``) and as NumPy 2 does
    (``[np.float32(0.0594), np.float32(nan)]``).
    """
    values = []
    for line in _PSEUDO_DICE_LINE.findall(text):
        classes = [float(n) for n in _NUMBER.findall(line.replace("float32", "").replace("float64", ""))]
        scored = [c for c in classes if not math.isnan(c)]
        values.append(sum(scored) / len(scored) if scored else math.nan)
    return values


def learning_onset(pseudo_dice: Sequence[float], above: float = ONSET_DICE) -> int | None:
    """The first epoch (0-based) whose pseudo Dice exceeds ``above``: before it the model marked (next to) no
    foreground voxel of the validation patches; ``None`` if it never did. NaN epochs (nothing to score) are passed
    over. The default 0.05 passes over the few voxels a freshly initialised network marks by chance (Dice 0.001 on
    the quality bench's first epoch) and catches every start measured there (0.06-0.53)."""
    if not 0.0 <= above < 1.0:
        raise ValueError(f"above must be in [0, 1), got {above!r}")
    return next((epoch for epoch, value in enumerate(pseudo_dice) if value > above), None)
