"""Deep supervision for the plugin's losses: nnU-Net's scale weights, and a per-image ``epsilon`` for every scale."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import nn


def nnunet_scale_weights(trainer) -> Optional[list[float]]:
    """The deep-supervision weights nnU-Net's ``_build_loss`` gives ``trainer``'s outputs, or ``None`` when deep
    supervision is off: ``1 / 2**i`` per scale, the lowest scale 0 (1e-6 under DDP without compile, so every
    output keeps a gradient), normalised to sum 1."""
    if not trainer.enable_deep_supervision:
        return None
    weights = np.array([1 / (2 ** i) for i in range(len(trainer._get_deep_supervision_scales()))])
    weights[-1] = 1e-6 if (trainer.is_ddp and not trainer._do_i_compile()) else 0
    return (weights / weights.sum()).tolist()


def deep_supervised(loss: nn.Module, weights: Optional[list[float]]) -> nn.Module:
    """``loss`` wrapped by nnU-Net's ``DeepSupervisionWrapper`` (``weights`` ``None``: unwrapped)."""
    return loss if weights is None else DeepSupervisionWrapper(loss, weights)


class _EpsilonArgument(nn.Module):
    """``loss(output, target, epsilon)`` -> ``loss(output, target, epsilon=epsilon)``, positional for the
    DeepSupervisionWrapper, which zips its positional arguments scale by scale."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, output: torch.Tensor, target: torch.Tensor, epsilon=None) -> torch.Tensor:
        return self.loss(output, target) if epsilon is None else self.loss(output, target, epsilon=epsilon)


class PerImageEpsilonLoss(nn.Module):
    """Deep supervision (nnU-Net's ``DeepSupervisionWrapper``) with one ``epsilon`` per image reaching every scale.

    The trainer calls the loss as nnU-Net does, ``loss(output, target)``; the per-image values of the current
    batch are set around that call with :meth:`using`::

        with trainer.loss.using(epsilon_of_batch):   # tensor (B,)
            super().train_step(batch)

    Outside :meth:`using` (validation, a stock call) the inner loss's default epsilon applies.

    Args:
        loss: called as ``loss(output, target, epsilon=...)`` per scale, e.g.
            ``RegionAndPixelLoss(PolyDice1Loss(...))``.
        weights: one weight per deep-supervision scale (:func:`nnunet_scale_weights`), or ``None`` for a network
            without deep supervision.
    """

    def __init__(self, loss: nn.Module, weights: Optional[list[float]] = None) -> None:
        super().__init__()
        self.inner = _EpsilonArgument(loss)
        self.deep_supervision = None if weights is None else DeepSupervisionWrapper(self.inner, weights)
        self.epsilon: Optional[torch.Tensor] = None

    @contextmanager
    def using(self, epsilon: Optional[torch.Tensor]) -> Iterator[None]:
        """Use ``epsilon`` (one value per image of the batch) for the calls inside the ``with`` block."""
        previous, self.epsilon = self.epsilon, epsilon
        try:
            yield
        finally:
            self.epsilon = previous

    def forward(self, output, target) -> torch.Tensor:
        if isinstance(output, (list, tuple)):
            if self.deep_supervision is None:
                raise ValueError(f"got {len(output)} deep-supervision outputs but the loss was built without "
                                 f"scale weights")
            return self.deep_supervision(output, target, [self.epsilon] * len(output))
        return self.inner(output, target, self.epsilon)
