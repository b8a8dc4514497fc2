"""The mean probability over a small window around each voxel, returned as logits.

A weak-box network trained with plane bags answered in a lattice on the bench phantom: P high on every other
voxel of a slice, with no 2 x 2 x 2 block even half on (a pattern of period 2, which the decoder's stride-2
transposed convolutions can draw at no cost). A smooth maximum over a plane cannot see it - one confident voxel
per plane satisfies the bag - and the size term even rewards it, since it carries less mass. Scored on the window
mean instead, a lattice reaches at most the share of the window it fills, so a bag is satisfied only by a solid
run of voxels at least ``width`` thick.

The mean is taken in probability space (bounded: a few saturated voxels cannot carry a window, as a mean of
logits would let them) and turned back into logits in the log domain, in float64, so that the gradient reaches
every voxel of the window for any finite logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def check_width(width: object) -> int:
    """``width`` if it is an integer >= 1.

    Raises:
        ValueError: otherwise.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"window width must be an integer >= 1, got {width!r}")
    return width


def window_mean_logits(logits: torch.Tensor, width: int) -> torch.Tensor:
    """``logit(mean of sigmoid(logits) over the width^d window whose lowest corner is each voxel)``.

    Windows that reach past the far border repeat the border voxel (replicate padding), so the output has the
    input's shape. ``width = 1`` returns ``logits`` unchanged.

    Args:
        logits: ``(B, C, *spatial)`` logits with 1-3 spatial axes.
        width: the window's edge in voxels, an integer >= 1.

    Returns:
        float32 logits of the input's shape.

    Raises:
        ValueError: on a width that is not an integer >= 1 or an input without 1-3 spatial axes.
    """
    check_width(width)
    spatial = logits.ndim - 2
    if not 1 <= spatial <= 3:
        raise ValueError(f"logits must be (B, C, *spatial) with 1-3 spatial axes, got shape {tuple(logits.shape)}")
    if width == 1:
        return logits
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[spatial - 1]
    x = logits.double()

    def log_window_mean(log_p: torch.Tensor) -> torch.Tensor:
        shift = log_p.detach().amax()  # float64 exp spans 700 nats: no window underflows for real logits
        padded = F.pad(torch.exp(log_p - shift), (0, width - 1) * spatial, mode="replicate")
        return torch.log(pool(padded, width, stride=1)) + shift

    log_mean = log_window_mean(F.logsigmoid(x))  # log of the window's mean P
    log_mean_rest = log_window_mean(F.logsigmoid(-x))  # log of the window's mean (1 - P)
    return (log_mean - log_mean_rest).float()

