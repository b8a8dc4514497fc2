"""Attention U-Net (Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the Pancreas",
arXiv:1804.03999) on dynamic-network-architectures' U-Net.

The encoder, the decoder's transposed convolutions, conv stages and segmentation heads are those of
:class:`~dynamic_network_architectures.architectures.unet.PlainConvUNet` (or ``ResidualEncoderUNet``), built by
their own constructors; the only change is one :class:`~nnunet_fracture.networks.attention_gate.AttentionGate`
per skip connection. Decoder stage ``s`` gates the skip it concatenates with the gating signal ``g`` = the stage's
input (the coarser decoder feature, or the bottleneck for the first stage) before its transposed convolution; the
gate's stride is the encoder stride between the two levels (anisotropic strides such as ``(1, 2, 2)`` included)::

    x_up  = transpconv(g)
    x     = stage(cat(x_up, alpha * skip))       alpha = gate(skip, g) in [0, 1], one channel at the skip's grid

One class serves 2D and 3D through ``conv_op``; constructor arguments are the plans' ``arch_kwargs`` names, so
a plans file can name the class directly (``architecture.network_class_name =
"nnunet_fracture.networks.attention_unet.AttentionUNet"``) or a trainer can build it from nnU-Net's default plans
(:class:`~nnunet_fracture.trainers.attention_unet.nnUNetTrainerAttentionUNet`).

Outputs are the U-Net's: with deep supervision a list of logits (highest resolution first), without one tensor;
in eval mode always one tensor. The attention coefficients are never returned: set ``keep_attention_maps = True``
and after each forward pass ``network.attention_maps`` holds them (detached, one ``(b, 1, *skip_shape)`` tensor
per skip, highest resolution first). Recording is off by default so training (and ``torch.compile``) see a
forward without side effects.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

from nnunet_fracture.networks.attention_gate import AttentionGate


class AttentionUNetDecoder(UNetDecoder):
    """``UNetDecoder`` whose skips are weighted by attention gates before concatenation.

    Takes ``UNetDecoder``'s arguments (the encoder must expose ``output_channels``, ``strides`` and ``conv_op``,
    as ``PlainConvEncoder`` and ``ResidualEncoder`` do). ``self.attention_gates[s]`` belongs to decoder stage
    ``s`` (lowest resolution first, like ``self.stages``).

    Attributes:
        keep_attention_maps: record the coefficients of each forward pass in :attr:`attention_maps`.
        attention_maps: detached coefficients of the last recorded pass, highest resolution first.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, n_conv_per_stage: Union[int, Sequence[int]],
                 deep_supervision: bool, **kwargs):
        super().__init__(encoder, num_classes, n_conv_per_stage, deep_supervision, **kwargs)
        channels, strides = encoder.output_channels, encoder.strides
        self.attention_gates = nn.ModuleList(
            AttentionGate(encoder.conv_op, skip_channels=channels[-(s + 1)], gating_channels=channels[-s],
                          stride=strides[-s])
            for s in range(1, len(channels)))
        self.keep_attention_maps = False
        self.attention_maps: List[torch.Tensor] = []

    def forward(self, skips: Sequence[torch.Tensor]):
        """``skips`` as the encoder returns them (bottleneck last); the return value is ``UNetDecoder``'s."""
        lres_input = skips[-1]
        seg_outputs, maps = [], []
        for s in range(len(self.stages)):
            gated_skip, alpha = self.attention_gates[s](skips[-(s + 2)], lres_input)
            x = self.stages[s](torch.cat((self.transpconvs[s](lres_input), gated_skip), 1))
            if self.deep_supervision or s == len(self.stages) - 1:
                seg_outputs.append(self.seg_layers[s](x))
            if self.keep_attention_maps:
                maps.append(alpha.detach())
            lres_input = x
        if self.keep_attention_maps:
            self.attention_maps = maps[::-1]
        seg_outputs = seg_outputs[::-1]  # highest resolution first
        return seg_outputs if self.deep_supervision else seg_outputs[0]

    def compute_conv_feature_map_size(self, input_size):
        """``UNetDecoder``'s estimate plus the gates' feature maps (gated skip, coefficients, and the additive
        attention space on the coarse grid)."""
        output = super().compute_conv_feature_map_size(input_size)
        size = list(input_size)
        for level, stride in enumerate(self.encoder.strides[:-1]):
            size = [i // j for i, j in zip(size, stride)]
            coarse = [i // j for i, j in zip(size, self.encoder.strides[level + 1])]
            gate = self.attention_gates[len(self.attention_gates) - 1 - level]
            inter = gate.psi.in_channels
            output += np.prod([self.encoder.output_channels[level] + 1, *size], dtype=np.int64)
            output += np.prod([2 * inter + 1, *coarse], dtype=np.int64)
        return output


class _AttentionMapsMixin:
    """``attention_maps`` / ``keep_attention_maps`` of the network, forwarded to its decoder."""

    decoder: AttentionUNetDecoder

    @property
    def keep_attention_maps(self) -> bool:
        """Record the attention coefficients of every forward pass (off by default)."""
        return self.decoder.keep_attention_maps

    @keep_attention_maps.setter
    def keep_attention_maps(self, value: bool) -> None:
        self.decoder.keep_attention_maps = bool(value)
        if not value:
            self.decoder.attention_maps = []

    @property
    def attention_maps(self) -> List[torch.Tensor]:
        """Coefficients in [0, 1] of the last forward pass made with ``keep_attention_maps = True``: one detached
        ``(batch, 1, *skip_shape)`` tensor per skip connection, highest resolution first."""
        return self.decoder.attention_maps

    def attention_strides(self) -> List[Tuple[int, ...]]:
        """Per attention level (highest resolution first): its grid's total stride relative to the input."""
        total = np.ones(len(self.encoder.strides[0]), dtype=int)
        out = []
        for stride in self.encoder.strides[:-1]:
            total = total * np.asarray(stride)
            out.append(tuple(int(t) for t in total))
        return out


class AttentionUNet(_AttentionMapsMixin, PlainConvUNet):
    """``PlainConvUNet`` with an attention gate on every skip connection (see the module docstring).

    Arguments are ``PlainConvUNet``'s (= the plans' ``arch_kwargs`` of nnU-Net's default U-Net plans).
    """

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: Union[int, List[int], Tuple[int, ...]],
                 conv_op: Type[_ConvNd], kernel_sizes: Union[int, List[int], Tuple[int, ...]],
                 strides: Union[int, List[int], Tuple[int, ...]], n_conv_per_stage: Union[int, List[int], Tuple[int, ...]],
                 num_classes: int, n_conv_per_stage_decoder: Union[int, Tuple[int, ...], List[int]],
                 conv_bias: bool = False, norm_op: Union[None, Type[nn.Module]] = None, norm_op_kwargs: dict = None,
                 dropout_op: Union[None, Type[_DropoutNd]] = None, dropout_op_kwargs: dict = None,
                 nonlin: Union[None, Type[torch.nn.Module]] = None, nonlin_kwargs: dict = None,
                 deep_supervision: bool = False, nonlin_first: bool = False):
        super().__init__(input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                         n_conv_per_stage, num_classes, n_conv_per_stage_decoder, conv_bias, norm_op, norm_op_kwargs,
                         dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, deep_supervision, nonlin_first)
        # the plain decoder PlainConvUNet built is replaced by the same decoder with gates
        self.decoder = AttentionUNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision,
                                            nonlin_first=nonlin_first)


class ResidualEncoderAttentionUNet(_AttentionMapsMixin, ResidualEncoderUNet):
    """``ResidualEncoderUNet`` (nnU-Net's ResEnc plans) with an attention gate on every skip connection.

    Arguments are ``ResidualEncoderUNet``'s (= the ``arch_kwargs`` of ``nnUNetResEncUNet*Plans``).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        old = self.decoder
        self.decoder = AttentionUNetDecoder(self.encoder, old.num_classes, [len(s.convs) for s in old.stages],
                                            old.deep_supervision)
