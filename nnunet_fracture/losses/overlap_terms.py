"""Shared input handling of the overlap losses (PolyDice-1, Focal Tversky) and the focal loss.

Data contract (nnU-Net's, so that ``DeepSupervisionWrapper`` can wrap the losses):

- ``net_output``: logits ``(B, C, *spatial)``, 1D to 3D spatial axes, any float dtype (computed in float32).
- ``target``: either a label map ``(B, 1, *spatial)`` (or ``(B, *spatial)``) of integers in ``[0, C)`` - nnU-Net's
  label training, turned into a one-hot ``(B, C, *spatial)`` - or a one-hot / region map of the same shape as
  ``net_output`` (nnU-Net's region training, sigmoid outputs).
- ``loss_mask``: optional ``(B, 1, *spatial)``, 1 where the loss is computed and 0 elsewhere (nnU-Net's ignore
  label, see :class:`~nnunet_fracture.losses.compound.RegionAndPixelLoss`).
"""
from __future__ import annotations

from typing import Optional

import torch

ACTIVATIONS = ("softmax", "sigmoid", "none")


def check_activation(activation: str) -> str:
    """Return ``activation`` if it is one of :data:`ACTIVATIONS`; raise ``ValueError`` naming it otherwise."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation


def check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def activate(net_output: torch.Tensor, activation: str) -> torch.Tensor:
    """float32 probabilities from ``net_output`` (autocast off, so half-precision input is computed in float32)."""
    with torch.autocast(device_type=net_output.device.type, enabled=False):
        x = net_output.float()
        if activation == "softmax":
            return torch.softmax(x, dim=1)
        if activation == "sigmoid":
            return torch.sigmoid(x)
        return x


def one_hot_target(net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """float32 one-hot ``(B, C, *spatial)`` of ``target`` (a label map or already one-hot), detached.

    A target of exactly ``net_output``'s shape is taken as one-hot (region) already.

    Raises:
        ValueError: quoting both shapes when ``target`` is neither a label map nor the shape of ``net_output``.
    """
    if net_output.ndim < 3:
        raise ValueError(f"net_output must be (B, C, *spatial), got shape {tuple(net_output.shape)}")
    with torch.no_grad():
        if tuple(target.shape) == tuple(net_output.shape):
            return target.float()  # already one-hot / regions (also a single sigmoid channel)
        y = target.unsqueeze(1) if target.ndim == net_output.ndim - 1 else target
        if y.ndim != net_output.ndim or y.shape[1] != 1 or y.shape[0] != net_output.shape[0] \
                or tuple(y.shape[2:]) != tuple(net_output.shape[2:]):
            raise ValueError(f"target shape {tuple(target.shape)} fits neither a label map (B, 1, *spatial) nor a "
                             f"one-hot map for net_output shape {tuple(net_output.shape)}")
        onehot = torch.zeros(net_output.shape, device=net_output.device, dtype=torch.float32)
        onehot.scatter_(1, y.long(), 1)
        return onehot


def check_mask(net_output: torch.Tensor, loss_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``loss_mask`` as float32 ``(B, 1, *spatial)`` (``None`` stays ``None``).

    Raises:
        ValueError: quoting both shapes if the mask does not fit ``net_output``.
    """
    if loss_mask is None:
        return None
    expected = (net_output.shape[0], 1, *net_output.shape[2:])
    if tuple(loss_mask.shape) != expected:
        raise ValueError(f"loss_mask shape {tuple(loss_mask.shape)} does not fit net_output shape "
                         f"{tuple(net_output.shape)}; expected {expected}")
    return loss_mask.detach().float()


def masked_class_maps(net_output: torch.Tensor, target: torch.Tensor, loss_mask: Optional[torch.Tensor],
                      activation: str, include_background: bool
                      ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """``(p, y, mask)``: float32 probabilities and one-hot target, channel 0 dropped unless ``include_background``,
    both multiplied by the checked ``loss_mask`` (returned too; ``None`` when not given).

    Raises:
        ValueError: quoting both shapes when ``target`` or ``loss_mask`` does not fit ``net_output``.
    """
    y = one_hot_target(net_output, target)
    mask = check_mask(net_output, loss_mask)
    p = activate(net_output, activation)
    if not include_background:
        p, y = p[:, 1:], y[:, 1:]
    if mask is not None:
        p, y = p * mask, y * mask
    return p, y, mask


def per_image_epsilon(epsilon, default: float, batch: int, device: torch.device) -> torch.Tensor:
    """``epsilon`` as a float32 tensor ``(B,)``: ``None`` gives ``default`` for every image, a number is broadcast.

    Raises:
        ValueError: if a tensor/sequence does not hold exactly one value per image.
    """
    if epsilon is None:
        return torch.full((batch,), float(default), device=device, dtype=torch.float32)
    e = torch.as_tensor(epsilon, dtype=torch.float32, device=device)
    if e.ndim == 0:
        return e.expand(batch)
    if e.ndim != 1 or e.shape[0] != batch:
        raise ValueError(f"epsilon must hold one value per image: shape ({batch},) for a batch of {batch}, got "
                         f"shape {tuple(e.shape)}")
    return e


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values
