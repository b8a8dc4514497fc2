"""2.5D slice-LSTM U-Net: a 2D encoder per slice, a bidirectional ConvLSTM along the slices, an attention-gated
2D decoder per slice; all slices of a 3D patch are predicted at once.

Input is a 3d_fullres patch ``(b, c, S, H, W)``: the slice axis is the first spatial axis, where nnU-Net puts the
out-of-plane (largest-spacing) axis. Data flow::

    (b, c, S, H, W) -> fold slices into the batch -> (b*S, c, H, W) -> 2D PlainConvEncoder (in-plane strides)
        -> every skip unfolded to 5D (b, C_k, S, h_k, w_k)
        -> skip_k + BidirectionalConvLSTM(skip_k) along S at the deepest ``lstm_levels`` levels (bottleneck first)
        -> fold -> 2D UNetDecoder with an AttentionGate on every skip -> unfold -> logits (b, K, S, H_k, W_k)

Every output voxel sees its own slice through the 2D path and every other slice of the patch through the LSTM
(forward and backward), which replaces the research plan's "5 slices in, centre slice out".

Contract (shared with the plugin's other networks): constructor arguments are the plans' ``arch_kwargs`` names;
``.encoder(x)`` returns the skips, bottleneck last; ``.decoder(skips)`` returns logits, a list (highest
resolution first) when ``.decoder.deep_supervision`` is on, else one tensor. Skips stay 5D ``(b, C, S, h, w)``
between encoder and decoder (``SLICE_AXIS = 2``), so a classification head on ``skips[-1]`` pools over
``(2, 3, 4)`` for one logit per patch or over the in-plane axes ``(3, 4)`` only for one logit per slice.
With ``keep_attention_maps = True`` the attention coefficients of the last forward pass are kept in
``.attention_maps`` (5D ``(b, 1, S, h, w)``, highest resolution first), never returned.

3d_fullres ``arch_kwargs`` can be passed unchanged (``conv_op`` Conv3d, 3-element kernels and strides): the slice
axis is dropped from kernels and strides and 3D norm / dropout ops become their 2D counterparts
(:func:`in_plane_arch_kwargs`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Type, Union

import torch
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

from nnunet_fracture.networks.attention_unet import AttentionUNetDecoder
from nnunet_fracture.networks.conv_lstm import (MERGE_MODES, BidirectionalConvLSTM, ConvLSTMCell, fold_sequence,
                                                unfold_sequence)

#: axis of the slices in the 5D input, skips and outputs ``(b, C, S, h, w)``
SLICE_AXIS = 2

IntOrSeq = Union[int, List[int], Tuple[int, ...]]


def _to_2d_op(op: Optional[type]) -> Optional[type]:
    """``nn.XXX3d`` -> ``nn.XXX2d`` (InstanceNorm, BatchNorm, Dropout, ...); any other op is returned unchanged."""
    if op is None or not op.__name__.endswith("3d"):
        return op
    twin = getattr(nn, op.__name__[:-2] + "2d", None)
    if twin is None:
        raise ValueError(f"{op.__module__}.{op.__name__} has no 2D counterpart in torch.nn; pass a 2D op instead")
    return twin


def _per_stage(value, n_stages: int, name: str) -> list:
    values = [value] * n_stages if isinstance(value, int) else list(value)
    if len(values) != n_stages:
        raise ValueError(f"{name} must have one entry per stage (n_stages={n_stages}), got {value!r}")
    return values


def in_plane_arch_kwargs(conv_op: Type[_ConvNd], kernel_sizes: IntOrSeq, strides: IntOrSeq, n_stages: int,
                         norm_op: Optional[type] = None, dropout_op: Optional[type] = None) -> dict:
    """2D versions of the geometry arguments: for ``nn.Conv3d`` drop the first (slice) axis from every kernel and
    stride and map 3D norm / dropout ops to 2D; ``nn.Conv2d`` arguments are returned as they are.

    Returns:
        ``{"conv_op", "kernel_sizes", "strides", "norm_op", "dropout_op"}`` with per-stage 2-element lists.

    Raises:
        ValueError: ``conv_op`` is neither ``nn.Conv2d`` nor ``nn.Conv3d``, or a per-stage entry has the wrong
            length.
    """
    if conv_op not in (nn.Conv2d, nn.Conv3d):
        raise ValueError(f"conv_op must be torch.nn.Conv3d (3d_fullres plans) or torch.nn.Conv2d, got {conv_op!r}")
    dim = 3 if conv_op is nn.Conv3d else 2
    out = {}
    for name, value in (("kernel_sizes", kernel_sizes), ("strides", strides)):
        entries = []
        for entry in _per_stage(value, n_stages, name):
            entry = [entry] * dim if isinstance(entry, int) else [int(e) for e in entry]
            if len(entry) != dim:
                raise ValueError(f"{name} entries must have {dim} elements for {conv_op.__name__}, got {value!r}")
            entries.append(entry[-2:])
        out[name] = entries
    out.update(conv_op=nn.Conv2d, norm_op=_to_2d_op(norm_op), dropout_op=_to_2d_op(dropout_op))
    return out


class SliceEncoder(nn.Module):
    """The per-slice 2D encoder plus ConvLSTMs along the slices: ``(b, c, S, H, W)`` -> 5D skips
    ``(b, C_k, S, h_k, w_k)``, bottleneck last, the LSTM already added at the deepest ``lstm_levels`` levels.

    Exposes the 2D encoder's ``output_channels``, ``strides`` (in-plane) and ``conv_op`` for heads and decoders.
    """

    def __init__(self, encoder2d: PlainConvEncoder, lstm_levels: int, lstm_hidden_channels: Optional[int],
                 lstm_kernel_size: int, lstm_merge: str, lstm_bidirectional: bool):
        super().__init__()
        n_stages = len(encoder2d.output_channels)
        if not isinstance(lstm_levels, int) or not 0 <= lstm_levels <= n_stages:
            raise ValueError(f"lstm_levels must be an integer from 0 (no LSTM) to n_stages={n_stages} (every level), "
                             f"got {lstm_levels!r}")
        if lstm_hidden_channels is not None and (not isinstance(lstm_hidden_channels, int) or lstm_hidden_channels < 1):
            raise ValueError(f"lstm_hidden_channels must be a positive integer or None (the level's own feature "
                             f"count), got {lstm_hidden_channels!r}")
        self.encoder2d = encoder2d
        self.output_channels = encoder2d.output_channels
        self.strides = encoder2d.strides
        self.conv_op = encoder2d.conv_op
        #: encoder levels (0 = highest resolution) that carry an LSTM, deepest first
        self.lstm_stages = tuple(range(n_stages - 1, n_stages - 1 - lstm_levels, -1))
        self.lstms = nn.ModuleDict({
            str(k): BidirectionalConvLSTM(
                self.output_channels[k], lstm_hidden_channels or self.output_channels[k], self.output_channels[k],
                lstm_kernel_size, encoder2d.conv_op, merge=lstm_merge, bidirectional=lstm_bidirectional,
                seq_dim=SLICE_AXIS)
            for k in self.lstm_stages})

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if x.ndim != 5:
            raise ValueError(f"the slice-LSTM network takes 3D patches (b, c, slices, h, w), got {tuple(x.shape)}; "
                             f"train it with a 3D configuration such as 3d_fullres")
        skips = [unfold_sequence(s, x.shape[0], SLICE_AXIS) for s in self.encoder2d(fold_sequence(x, SLICE_AXIS))]
        for k in self.lstm_stages:
            skips[k] = skips[k] + self.lstms[str(k)](skips[k])  # residual: the per-slice features stay reachable
        return skips


class SliceDecoder(nn.Module):
    """Applies a 2D decoder to every slice of 5D skips; outputs ``(b, K, S, h, w)`` logits. ``deep_supervision``
    reads and writes the 2D decoder's flag (nnU-Net's ``set_deep_supervision_enabled`` sets it);
    ``keep_attention_maps`` the attention decoder's, and ``attention_maps`` holds its coefficients as 5D
    ``(b, 1, S, h, w)`` tensors, highest resolution first."""

    def __init__(self, decoder2d: UNetDecoder):
        super().__init__()
        self.decoder2d = decoder2d
        self.num_classes = decoder2d.num_classes
        self.attention_maps: List[torch.Tensor] = []

    @property
    def deep_supervision(self) -> bool:
        return self.decoder2d.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self.decoder2d.deep_supervision = enabled

    @property
    def keep_attention_maps(self) -> bool:
        return getattr(self.decoder2d, "keep_attention_maps", False)

    @keep_attention_maps.setter
    def keep_attention_maps(self, value: bool) -> None:
        if not hasattr(self.decoder2d, "keep_attention_maps"):
            raise AttributeError("this slice-LSTM network was built with attention_gates=False: no attention maps")
        self.decoder2d.keep_attention_maps = bool(value)
        if not value:
            self.decoder2d.attention_maps = []
            self.attention_maps = []

    def forward(self, skips: Sequence[torch.Tensor]):
        batch = skips[-1].shape[0]
        out = self.decoder2d([fold_sequence(s, SLICE_AXIS) for s in skips])
        if self.keep_attention_maps:
            self.attention_maps = [unfold_sequence(a, batch, SLICE_AXIS) for a in self.decoder2d.attention_maps]
        if isinstance(out, (list, tuple)):
            return [unfold_sequence(o, batch, SLICE_AXIS).contiguous() for o in out]
        return unfold_sequence(out, batch, SLICE_AXIS).contiguous()


class SliceLSTMUNet(nn.Module):
    """The 2.5D slice-LSTM U-Net (see the module docstring).

    Args:
        input_channels ... deep_supervision, nonlin_first: as dynamic-network-architectures' ``PlainConvUNet``;
            3D plans arguments are converted to in-plane ones (:func:`in_plane_arch_kwargs`).
        lstm_levels: how many of the deepest encoder levels get a ConvLSTM along the slices: 1 = bottleneck only,
            n_stages = every level, 0 = none (a plain per-slice 2D U-Net, for ablations).
        lstm_hidden_channels: hidden channels of each LSTM direction; None = the level's own feature count.
        lstm_kernel_size: odd in-plane kernel of the LSTM convolutions.
        lstm_merge: ``"concat"`` (1x1 convolution over both directions) or ``"sum"``.
        lstm_bidirectional: False keeps the forward (first slice -> last) pass only.
        attention_gates: False uses dynamic-network-architectures' plain ``UNetDecoder``.

    Raises:
        ValueError: inconsistent per-stage arguments, a conv_op other than Conv2d/Conv3d, bad LSTM settings.
    """

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: IntOrSeq, conv_op: Type[_ConvNd],
                 kernel_sizes: IntOrSeq, strides: IntOrSeq, n_conv_per_stage: IntOrSeq, num_classes: int,
                 n_conv_per_stage_decoder: IntOrSeq, conv_bias: bool = False,
                 norm_op: Union[None, Type[nn.Module]] = None, norm_op_kwargs: dict = None,
                 dropout_op: Union[None, Type[_DropoutNd]] = None, dropout_op_kwargs: dict = None,
                 nonlin: Union[None, Type[nn.Module]] = None, nonlin_kwargs: dict = None,
                 deep_supervision: bool = False, nonlin_first: bool = False, lstm_levels: int = 1,
                 lstm_hidden_channels: Optional[int] = None, lstm_kernel_size: int = 3, lstm_merge: str = "concat",
                 lstm_bidirectional: bool = True, attention_gates: bool = True):
        super().__init__()
        if lstm_merge not in MERGE_MODES:
            raise ValueError(f"lstm_merge must be one of {MERGE_MODES}, got {lstm_merge!r}")
        geometry = in_plane_arch_kwargs(conv_op, kernel_sizes, strides, n_stages, norm_op, dropout_op)
        n_conv_per_stage_decoder = _per_stage(n_conv_per_stage_decoder, n_stages - 1, "n_conv_per_stage_decoder")
        encoder2d = PlainConvEncoder(
            input_channels, n_stages, features_per_stage, geometry["conv_op"], geometry["kernel_sizes"],
            geometry["strides"], n_conv_per_stage, conv_bias, geometry["norm_op"], norm_op_kwargs,
            geometry["dropout_op"], dropout_op_kwargs, nonlin, nonlin_kwargs, return_skips=True,
            nonlin_first=nonlin_first)
        decoder_class = AttentionUNetDecoder if attention_gates else UNetDecoder
        decoder2d = decoder_class(encoder2d, num_classes, n_conv_per_stage_decoder, deep_supervision,
                                  nonlin_first=nonlin_first)
        self.encoder = SliceEncoder(encoder2d, lstm_levels, lstm_hidden_channels, lstm_kernel_size, lstm_merge,
                                    lstm_bidirectional)
        self.decoder = SliceDecoder(decoder2d)
        self.slice_axis = SLICE_AXIS

    def forward(self, x: torch.Tensor):
        return self.decoder(self.encoder(x))

    @property
    def keep_attention_maps(self) -> bool:
        """Record the attention coefficients of every forward pass (off by default)."""
        return self.decoder.keep_attention_maps

    @keep_attention_maps.setter
    def keep_attention_maps(self, value: bool) -> None:
        self.decoder.keep_attention_maps = value

    @property
    def attention_maps(self) -> List[torch.Tensor]:
        """Detached coefficients in [0, 1] of the last pass made with ``keep_attention_maps = True``: one
        ``(b, 1, S, h, w)`` tensor per skip connection, highest resolution first."""
        return self.decoder.attention_maps

    def attention_strides(self) -> List[Tuple[int, ...]]:
        """Per attention level (highest resolution first): its grid's stride relative to the input, slices first
        (always 1: the slices are never pooled)."""
        out, total = [], (1, 1)
        for stride in self.encoder.strides[:-1]:
            total = tuple(t * int(s) for t, s in zip(total, stride))
            out.append((1, *total))
        return out

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """nnU-Net's He initialisation (as ``PlainConvUNet``), then the LSTM cells' own bias / peephole start
        values (``nn.Module.apply`` visits a cell after its convolutions)."""
        InitWeights_He(1e-2)(module)
        if isinstance(module, ConvLSTMCell):
            module.reset_parameters()
