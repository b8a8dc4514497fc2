"""The adversarial trainer's discriminator: built from the plans' dimensionality, updated once per training step.

nnU-Net's ``train_step`` updates the segmentation network only; the discriminator D of
:class:`~nnunet_fracture.losses.adversarial.AdversarialSegmentationLoss` is updated right after it, on the pair
that step produced (pix2pix alternates one G step and one D step), with its own Adam optimiser (pix2pix: learning
rate 2e-4, betas (0.5, 0.999)) and, on CUDA, its own gradient scaler under autocast as nnU-Net uses for G.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import nn

from nnunet_fracture.losses.adversarial import AdversarialSegmentationLoss
from nnunet_fracture.networks.patch_discriminator import PatchDiscriminator

#: pix2pix's Adam betas for both networks
BETAS = (0.5, 0.999)


def build_discriminator(image_channels: int, classes: int, spatial_dims: int, features: int,
                        stages: int) -> PatchDiscriminator:
    """A PatchGAN for ``spatial_dims``-D patches of ``image_channels`` + ``classes`` channels: ``stages`` stride-2
    stages of 4-wide kernels with ``features``, 2 x ``features`` ... channels (capped at 8 x, pix2pix's 512 / 64),
    instance normalisation (nnU-Net's; pix2pix uses batch norm, unusable at nnU-Net's batch size 2) and
    LeakyReLU 0.2.

    Raises:
        ValueError: for ``spatial_dims`` other than 2 or 3 or a bad size.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"the discriminator is 2D or 3D, got {spatial_dims} spatial axes")
    conv, norm = (nn.Conv2d, nn.InstanceNorm2d) if spatial_dims == 2 else (nn.Conv3d, nn.InstanceNorm3d)
    widths = [features * min(2 ** s, 8) for s in range(stages)]
    return PatchDiscriminator(image_channels + classes, stages, widths, conv, kernel_sizes=4, strides=2,
                              norm_op=norm, norm_op_kwargs={"affine": True, "eps": 1e-5})


class DiscriminatorUpdates:
    """D's optimiser and gradient scaler; :meth:`step` updates D on the loss's pending pair.

    Args:
        loss: the adversarial loss whose discriminator is trained.
        lr: Adam's learning rate (pix2pix: 2e-4).
        device: where training runs (autocast and a gradient scaler on CUDA only, like nnU-Net).
    """

    def __init__(self, loss: AdversarialSegmentationLoss, lr: float, device: torch.device) -> None:
        self.loss = loss
        self.device = device
        self.optimizer = torch.optim.Adam(loss.discriminator.parameters(), lr=lr, betas=BETAS)
        self.scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None

    def step(self) -> Optional[float]:
        """One update of D; its loss, or ``None`` when the last training step left no pair (weight 0)."""
        cast = torch.autocast(self.device.type) if self.device.type == "cuda" else contextlib.nullcontext()
        self.optimizer.zero_grad(set_to_none=True)  # also drops what G's step may have left
        with cast:
            d_loss = self.loss.discriminator_loss()
        if d_loss is None:
            return None
        if self.scaler is not None:
            self.scaler.scale(d_loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            d_loss.backward()
            self.optimizer.step()
        return float(d_loss.detach())

    def state_dict(self) -> dict:
        """D's weights, its optimiser and scaler, for the trainer's checkpoint."""
        return {"discriminator": self.loss.discriminator.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.loss.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
