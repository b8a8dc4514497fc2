"""L4 of the weak-box losses: agree with the VAE anomaly prior."""
from __future__ import annotations

import torch
from torch import nn

from nnunet_fracture.losses.bag_aggregation import check_fracture_logits


class ConsistencyLoss(nn.Module):
    """``L4 = mean |P - E|`` over all voxels, ``E`` the normalised reconstruction-error map in ``[0, 1]``.

    ``E`` comes from a VAE trained on normal vertebrae only (phase 1 of the VAE anomaly prior, written as the
    extra input channel ``_0001`` in phase 2), so it is high where the tissue looks unlike normal bone. It is a
    fixed target: it is detached, and its range is the caller's responsibility (it is not checked, which would
    cost a device synchronisation per step). Computed in float32.
    """

    def forward(self, logits: torch.Tensor, error_map: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 1, *spatial)`` fracture logits.
            error_map: ``(B, 1, *spatial)`` normalised reconstruction error ``E`` in ``[0, 1]``.

        Returns:
            float32 scalar.

        Raises:
            ValueError: if ``logits`` has more than one channel or ``error_map`` has a different shape.
        """
        check_fracture_logits(logits)
        if tuple(error_map.shape) != tuple(logits.shape):
            raise ValueError(f"error_map shape {tuple(error_map.shape)} differs from logits shape "
                             f"{tuple(logits.shape)}; both must be (B, 1, *spatial)")
        return torch.abs(torch.sigmoid(logits.float()) - error_map.detach().float()).mean()
