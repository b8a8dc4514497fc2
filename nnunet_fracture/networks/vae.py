"""A convolutional variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014) for the
VAE anomaly prior, built from nnU-Net plans like a dynamic-network-architectures U-Net.

Encoder: one ``StackedConvBlocks`` per stage (the plans' features, kernels and strides), flattened at the
bottleneck into a dense latent code ``z`` of ``latent_dim`` numbers through two linear heads, ``mu`` and
``log sigma^2`` (clamped to [-10, 10] for stability). Decoder: a linear layer back to the bottleneck, then per
stage a transposed convolution (kernel = stride) and ``StackedConvBlocks``, and a 1x1 convolution to the input
channels (no output non-linearity: the input is nnU-Net-normalised CT). A dense latent is a hard bottleneck: a
VAE trained on normal anatomy cannot copy an unusual structure through it, which is what makes its
reconstruction error an anomaly map. It fixes the input size to ``patch_size``, which is what nnU-Net's
sliding-window predictor feeds (smaller images are padded to it).

Outputs:

- training mode: :class:`VAEOutput` ``(reconstruction, mu, logvar)``, with ``z = mu + sigma * eps``;
- eval mode: ONE tensor, the voxel-wise reconstruction error ``|x - x_hat|`` (mean over input channels, decoded
  from ``z = mu``), repeated to ``num_classes`` channels - what ``nnUNetPredictor`` expects from a network, so
  its sliding window with gaussian blending and its resampling drive the VAE unchanged.
  :meth:`ConvVAE.vae_outputs` gives all three tensors in either mode.
"""
from __future__ import annotations

from math import prod
from typing import NamedTuple, Optional, Sequence, Tuple, Type, Union

import torch
from dynamic_network_architectures.building_blocks.helper import (get_matching_convtransp,
                                                                   maybe_convert_scalar_to_list)
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from torch import nn
from torch.nn.modules.conv import _ConvNd

LOGVAR_RANGE = (-10.0, 10.0)
IntOrSeq = Union[int, Sequence[int]]


class VAEOutput(NamedTuple):
    """What the VAE returns in training mode."""

    reconstruction: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor


class _NoDeepSupervision(nn.Module):
    """Holds the ``deep_supervision`` flag that nnU-Net's ``set_deep_supervision_enabled`` sets on
    ``network.decoder``; the VAE has one output scale, so the flag changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.deep_supervision = False


def _per_stage(name: str, value, n_stages: int) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_stages
    if len(values) != n_stages:
        raise ValueError(f"{name} has {len(values)} entries but n_stages is {n_stages}")
    return values


class ConvVAE(nn.Module):
    """Convolutional VAE with a dense latent code, for 2D or 3D (``conv_op``); see the module docstring.

    Args mirror the plans' ``arch_kwargs`` of nnU-Net's ``PlainConvUNet`` (extra U-Net arguments such as
    ``n_conv_per_stage_decoder`` or ``deep_supervision`` are accepted; the decoder uses ``n_conv_per_stage_decoder``
    where given), plus:

    Args:
        patch_size: the fixed input size (spatial), divisible by the product of the strides on every axis.
        latent_dim: size of the dense latent code (>= 1); ignored with ``latent_channels``.
        latent_channels: if given, a spatial latent code instead: ``latent_channels`` maps on the bottleneck grid
            (1x1 convolutions instead of linear heads), i.e. ``latent_channels x prod(bottleneck)`` numbers.
        num_classes: channels of the eval-mode output (the error map repeated), i.e. the number of
            segmentation heads nnU-Net's predictor allocates.

    Raises:
        ValueError: a per-stage list of the wrong length, a patch not divisible by the total stride, or
            ``latent_dim < 1``.
    """

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: IntOrSeq, conv_op: Type[_ConvNd],
                 kernel_sizes: IntOrSeq, strides: IntOrSeq, n_conv_per_stage: IntOrSeq, num_classes: int,
                 patch_size: Sequence[int], latent_dim: int = 128, latent_channels: Optional[int] = None,
                 n_conv_per_stage_decoder: Optional[IntOrSeq] = None, conv_bias: bool = False,
                 norm_op: Union[None, Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 dropout_op: Union[None, Type[nn.Module]] = None, dropout_op_kwargs: Optional[dict] = None,
                 nonlin: Union[None, Type[nn.Module]] = None, nonlin_kwargs: Optional[dict] = None,
                 deep_supervision: bool = False, nonlin_first: bool = False) -> None:
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be an integer >= 1, got {latent_dim!r}")
        if latent_channels is not None and (not isinstance(latent_channels, int) or latent_channels < 1):
            raise ValueError(f"latent_channels must be None or an integer >= 1, got {latent_channels!r}")
        if num_classes < 1 or input_channels < 1:
            raise ValueError(f"input_channels and num_classes must be >= 1, got {input_channels}, {num_classes}")
        features = _per_stage("features_per_stage", features_per_stage, n_stages)
        kernels = [maybe_convert_scalar_to_list(conv_op, k) for k in _per_stage("kernel_sizes", kernel_sizes, n_stages)]
        strides = [maybe_convert_scalar_to_list(conv_op, s) for s in _per_stage("strides", strides, n_stages)]
        n_convs = _per_stage("n_conv_per_stage", n_conv_per_stage, n_stages)
        if n_conv_per_stage_decoder is None:
            n_convs_dec = n_convs[:-1]
        else:
            n_convs_dec = _per_stage("n_conv_per_stage_decoder", n_conv_per_stage_decoder, n_stages - 1)
        patch = [int(p) for p in patch_size]
        total = [prod(int(s[axis]) for s in strides) for axis in range(len(patch))]
        if any(p % t for p, t in zip(patch, total)):
            raise ValueError(f"patch_size {patch} is not divisible by the total stride {total} of the encoder")
        self.input_channels, self.num_classes = input_channels, num_classes
        self.patch_size = tuple(patch)
        self.bottleneck_shape = (features[-1], *(p // t for p, t in zip(patch, total)))
        self.latent_channels = latent_channels
        self.latent_dim = latent_dim if latent_channels is None else latent_channels * prod(self.bottleneck_shape[1:])
        blocks = dict(conv_bias=conv_bias, norm_op=norm_op, norm_op_kwargs=norm_op_kwargs, dropout_op=dropout_op,
                      dropout_op_kwargs=dropout_op_kwargs, nonlin=nonlin, nonlin_kwargs=nonlin_kwargs,
                      nonlin_first=nonlin_first)

        encoder, channels = [], input_channels
        for s in range(n_stages):
            encoder.append(StackedConvBlocks(n_convs[s], conv_op, channels, features[s], kernels[s], strides[s],
                                             **blocks))
            channels = features[s]
        self.encoder = nn.Sequential(*encoder)
        flat = prod(self.bottleneck_shape)
        if latent_channels is None:
            self.fc_mu = nn.Linear(flat, latent_dim)
            self.fc_logvar = nn.Linear(flat, latent_dim)
            self.fc_decode = nn.Linear(latent_dim, flat)
        else:
            self.fc_mu = conv_op(features[-1], latent_channels, 1)
            self.fc_logvar = conv_op(features[-1], latent_channels, 1)
            self.fc_decode = conv_op(latent_channels, features[-1], 1)

        transpconv = get_matching_convtransp(conv_op)
        up, stages = [], []
        for s in range(n_stages - 1, 0, -1):
            up.append(transpconv(features[s], features[s - 1], strides[s], strides[s], bias=conv_bias))
            stages.append(StackedConvBlocks(n_convs_dec[s - 1], conv_op, features[s - 1], features[s - 1],
                                            kernels[s - 1], 1, **blocks))
        self.up = nn.ModuleList(up)
        self.decoder_stages = nn.ModuleList(stages)
        self.head = conv_op(features[0], input_channels, 1, 1, 0, bias=True)
        self.decoder = _NoDeepSupervision()

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(B, latent_dim)``.

        Raises:
            ValueError: if ``x`` is not ``(B, input_channels, *patch_size)``.
        """
        if tuple(x.shape[1:]) != (self.input_channels, *self.patch_size):
            raise ValueError(f"input shape {tuple(x.shape)} does not match (B, {self.input_channels}, "
                             f"{', '.join(map(str, self.patch_size))}): this VAE has a dense latent code, so its "
                             f"input must be exactly one patch")
        h = self.encoder(x)
        if self.latent_channels is None:
            h = h.flatten(1)
        return self.fc_mu(h).flatten(1), self.fc_logvar(h).clamp(*LOGVAR_RANGE).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction ``(B, input_channels, *patch_size)`` of latent codes ``z`` ``(B, latent_dim)``."""
        if self.latent_channels is None:
            h = self.fc_decode(z).view(z.shape[0], *self.bottleneck_shape)
        else:
            h = self.fc_decode(z.view(z.shape[0], self.latent_channels, *self.bottleneck_shape[1:]))
        for up, stage in zip(self.up, self.decoder_stages):
            h = stage(up(h))
        return self.head(h)

    def vae_outputs(self, x: torch.Tensor, sample: Optional[bool] = None) -> VAEOutput:
        """Reconstruction, ``mu`` and ``logvar``; ``z`` is sampled when ``sample`` (default: in training mode)."""
        mu, logvar = self.encode(x)
        sample = self.training if sample is None else sample
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return VAEOutput(self.decode(z), mu, logvar)

    @staticmethod
    def error_map(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """``mean over channels |x - reconstruction|``, shape ``(B, 1, *spatial)``."""
        return (x.float() - reconstruction.float()).abs().mean(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> Union[VAEOutput, torch.Tensor]:
        out = self.vae_outputs(x)
        if self.training:
            return out
        error = self.error_map(x, out.reconstruction)
        return error.expand(-1, self.num_classes, *error.shape[2:]).contiguous()

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He initialisation of convolutions (as nnU-Net's ``InitWeights_He``), called through ``apply``."""
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(module.weight, a=1e-2)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def arguments_from_plans(arch_kwargs: dict, patch_size, latent_dim: int, latent_channels: Optional[int]) -> dict:
    """:class:`ConvVAE` keyword arguments from a plans configuration's ``network_arch_init_kwargs`` (a plain or a
    residual-encoder U-Net's: the residual stages' block counts become convolutions per stage) and its patch size."""
    kwargs = {k: v for k, v in arch_kwargs.items()
              if k not in ("n_blocks_per_stage", "block", "bottleneck_channels", "stem_channels")}
    if "n_conv_per_stage" not in kwargs:
        kwargs["n_conv_per_stage"] = arch_kwargs["n_blocks_per_stage"]
    return {**kwargs, "patch_size": list(patch_size), "latent_dim": latent_dim, "latent_channels": latent_channels}
