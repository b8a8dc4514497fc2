"""What a weak-box trainer's loss takes from the batch besides the network output and the box numbers: the VAE error
map E (L4, read from the input channel ``vae-error`` wrote, clipped to [0, 1]) and the CT in HU (the affinity term,
undoing nnU-Net's CT normalisation), passed as keyword arguments while a training or validation step runs."""
from __future__ import annotations

import contextlib
from functools import partial
from typing import Iterator, Optional

import torch

from nnunet_fracture.training.box_priors import hu_from_normalised


def weak_loss_inputs(data: torch.Tensor, device: torch.device, error_channel: Optional[int],
                     hu_normalisation: Optional[tuple[str, dict]]) -> dict[str, torch.Tensor]:
    """The loss's extra inputs from a batch's ``data`` (B, C, *spatial).

    Args:
        data: the batch's input channels.
        device: where the loss runs.
        error_channel: the E channel to pass as ``error_map`` (None: none).
        hu_normalisation: ``(scheme, intensity properties)`` of channel 0, to pass the CT in HU as ``image_hu``
            (None: none).
    """
    extra = {}
    if error_channel is not None:
        c = error_channel
        extra["error_map"] = data[:, c:c + 1].to(device, non_blocking=True).clamp(0, 1)
    if hu_normalisation is not None:
        extra["image_hu"] = hu_from_normalised(data[:, :1].to(device, non_blocking=True), *hu_normalisation)
    return extra


@contextlib.contextmanager
def loss_called_with(trainer, extra: dict) -> Iterator[None]:
    """Inside the block, ``trainer.loss(output, target)`` also receives ``extra`` (nothing changes when empty), so
    nnU-Net's own ``train_step`` runs unchanged."""
    if not extra:
        yield
        return
    loss = trainer.loss
    trainer.loss = partial(loss, **extra)
    try:
        yield
    finally:
        trainer.loss = loss
