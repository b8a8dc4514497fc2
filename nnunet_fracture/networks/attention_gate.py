"""Additive attention gate for U-Net skip connections (Oktay et al. 2018, "Attention U-Net: Learning Where to Look
for the Pancreas", arXiv:1804.03999).

The skip feature ``x`` (fine) is weighted voxel-wise by coefficients ``alpha`` in [0, 1] computed from ``x`` and
a gating signal ``g``, the coarser decoder feature one level below::

    q     = psi(ReLU(W_x * x  +  W_g * g))      W_x: conv with kernel = stride = the level's stride (x -> g's grid)
    alpha = sigmoid(q), resampled to x's grid   W_g, psi: 1x1 convs; psi has one output channel
    out   = alpha * x

The additive term is computed on the coarse grid (as in the paper), which keeps the gate cheap; ``alpha`` is
brought back to the skip's grid by (bi/tri)linear interpolation. One class serves 2D and 3D through ``conv_op``.
"""
from __future__ import annotations

from typing import Sequence, Type, Union

import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd

_INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}


class AttentionGate(nn.Module):
    """Gate a skip connection with coefficients computed from the skip and the coarser gating signal.

    Args:
        conv_op: ``nn.Conv2d`` or ``nn.Conv3d`` (``nn.Conv1d`` works too).
        skip_channels: channels of the skip feature ``x``.
        gating_channels: channels of the gating signal ``g``.
        inter_channels: channels of the additive attention space; default ``max(1, skip_channels // 2)``.
        stride: the stride between ``x``'s and ``g``'s grids (int or one per axis, e.g. ``(1, 2, 2)``).

    Raises:
        ValueError: a channel count below 1, or a stride of the wrong length or below 1.
    """

    def __init__(self, conv_op: Type[_ConvNd], skip_channels: int, gating_channels: int,
                 inter_channels: int | None = None, stride: Union[int, Sequence[int]] = 2):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        inter_channels = max(1, skip_channels // 2) if inter_channels is None else inter_channels
        for name, value in (("skip_channels", skip_channels), ("gating_channels", gating_channels),
                            ("inter_channels", inter_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        stride = (stride,) * dim if isinstance(stride, int) else tuple(int(s) for s in stride)
        if len(stride) != dim or min(stride) < 1:
            raise ValueError(f"stride must be a positive int or {dim} positive ints for {conv_op.__name__}, "
                             f"got {stride!r}")
        self.stride = stride
        self.mode = _INTERPOLATION[dim]
        self.theta_x = conv_op(skip_channels, inter_channels, kernel_size=stride, stride=stride, bias=False)
        self.phi_g = conv_op(gating_channels, inter_channels, kernel_size=1, bias=True)
        self.psi = conv_op(inter_channels, 1, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(alpha * x, alpha)``; ``alpha`` has one channel and ``x``'s spatial shape.

        Raises:
            ValueError: ``x`` and ``g`` differ in batch size or dimensionality.
        """
        if x.ndim != g.ndim or x.shape[0] != g.shape[0]:
            raise ValueError(f"skip x and gating g must share batch size and dimensionality, got x {tuple(x.shape)} "
                             f"and g {tuple(g.shape)}")
        theta = self.theta_x(x)
        phi = self.phi_g(g)
        if phi.shape[2:] != theta.shape[2:]:  # patch edges not divisible by the stride
            phi = F.interpolate(phi, size=theta.shape[2:], mode=self.mode, align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        if alpha.shape[2:] != x.shape[2:]:
            alpha = F.interpolate(alpha, size=x.shape[2:], mode=self.mode, align_corners=False)
        return alpha * x, alpha
