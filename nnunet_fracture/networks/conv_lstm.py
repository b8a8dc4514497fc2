"""Convolutional LSTM (Shi et al. 2015, "Convolutional LSTM Network: A Machine Learning Approach for
Precipitation Nowcasting", arXiv:1506.04214) and a bidirectional layer that runs it along a sequence axis.

The cell replaces the LSTM's matrix products by convolutions, so input, hidden state and cell state are feature
maps (``*`` convolution, ``o`` Hadamard product)::

    i_t = sigmoid(W_xi * X_t + W_hi * H_{t-1} + w_ci o C_{t-1} + b_i)
    f_t = sigmoid(W_xf * X_t + W_hf * H_{t-1} + w_cf o C_{t-1} + b_f)
    C_t = f_t o C_{t-1} + i_t o tanh(W_xc * X_t + W_hc * H_{t-1} + b_c)
    o_t = sigmoid(W_xo * X_t + W_ho * H_{t-1} + w_co o C_t + b_o)
    H_t = o_t o tanh(C_t)

The peephole weights ``w_c*`` are one per channel here (the paper's are per channel and pixel, which would tie the
network to one patch size); ``peephole=False`` drops them. The input convolutions ``W_x*`` do not depend on the
state, so :class:`ConvLSTM` computes them for all time steps in one batched call and only ``W_h*`` runs step by
step. One class serves 1D/2D/3D feature maps through ``conv_op``.

Tensors are laid out ``(batch, channels, sequence, *spatial)`` by default (the sequence axis is settable), which is
how a 3D patch ``(b, c, slices, h, w)`` arrives: a 2D ``conv_op`` then runs an LSTM along the slices.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Type, Union

import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn
from torch.nn.modules.conv import _ConvNd

State = Tuple[torch.Tensor, torch.Tensor]
MERGE_MODES = ("concat", "sum")


def _kernel_and_padding(kernel_size: Union[int, Sequence[int]], dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    kernel = (kernel_size,) * dim if isinstance(kernel_size, int) else tuple(int(k) for k in kernel_size)
    if len(kernel) != dim or any(k < 1 or k % 2 == 0 for k in kernel):
        raise ValueError(f"kernel_size must be an odd positive int or {dim} of them, got {kernel_size!r}")
    return kernel, tuple(k // 2 for k in kernel)


def fold_sequence(x: torch.Tensor, seq_dim: int) -> torch.Tensor:
    """``(b, c, ..., S at seq_dim, ...)`` -> ``(b * S, c, ...)``: the sequence axis folded into the batch."""
    x = x.movedim(seq_dim, 1)
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def unfold_sequence(x: torch.Tensor, batch: int, seq_dim: int) -> torch.Tensor:
    """Inverse of :func:`fold_sequence`: ``(b * S, c, ...)`` -> ``(b, c, ..., S at seq_dim, ...)``."""
    return x.reshape(batch, x.shape[0] // batch, *x.shape[1:]).movedim(1, seq_dim)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step (equations in the module docstring); gates are stacked in the order i, f, c, o.

    Args:
        input_channels: channels of ``X_t``.
        hidden_channels: channels of ``H_t`` and ``C_t``.
        kernel_size: odd kernel of both convolutions (int or one per spatial axis); 'same' padding.
        conv_op: ``nn.Conv2d`` for 2D feature maps (``nn.Conv1d`` / ``nn.Conv3d`` work too).
        bias: learn the gate biases ``b_*`` (the forget gate's start at 1, Jozefowicz et al. 2015).
        peephole: use the per-channel peephole weights ``w_c*`` (they start at 0).

    Raises:
        ValueError: a channel count below 1 or an even kernel.
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: Union[int, Sequence[int]] = 3,
                 conv_op: Type[_ConvNd] = nn.Conv2d, bias: bool = True, peephole: bool = True):
        super().__init__()
        for name, value in (("input_channels", input_channels), ("hidden_channels", hidden_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.dim = convert_conv_op_to_dim(conv_op)
        kernel, padding = _kernel_and_padding(kernel_size, self.dim)
        self.input_channels, self.hidden_channels = input_channels, hidden_channels
        self.input_conv = conv_op(input_channels, 4 * hidden_channels, kernel, padding=padding, bias=bias)
        self.hidden_conv = conv_op(hidden_channels, 4 * hidden_channels, kernel, padding=padding, bias=False)
        self.peephole = nn.Parameter(torch.zeros(3, hidden_channels)) if peephole else None  # w_ci, w_cf, w_co
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Forget-gate bias 1, other biases and peepholes 0 (convolution weights keep their initialisation).
        Call it again after a whole-network weight initialisation that zeroes biases."""
        with torch.no_grad():
            if self.input_conv.bias is not None:
                self.input_conv.bias.zero_()
                self.input_conv.bias[self.hidden_channels:2 * self.hidden_channels] = 1.0
            if self.peephole is not None:
                self.peephole.zero_()

    def initial_state(self, x: torch.Tensor) -> State:
        """Zero ``(H, C)`` matching ``x`` (batch and spatial shape, dtype, device)."""
        h = x.new_zeros((x.shape[0], self.hidden_channels, *x.shape[2:]))
        return h, h.clone()

    def step(self, input_gates: torch.Tensor, state: State) -> State:
        """Advance one step given ``input_gates = input_conv(X_t)`` (4 * hidden channels); return ``(H_t, C_t)``."""
        h, c = state
        gates = input_gates + self.hidden_conv(h)
        i, f, g, o = gates.chunk(4, dim=1)
        if self.peephole is not None:
            w_ci, w_cf, w_co = (w.view(1, -1, *([1] * self.dim)) for w in self.peephole)
            i, f = i + w_ci * c, f + w_cf * c
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if self.peephole is not None:
            o = o + w_co * c
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> State:
        """One step on ``x`` of shape ``(b, input_channels, *spatial)``; ``state`` defaults to zeros."""
        if x.ndim != self.dim + 2 or x.shape[1] != self.input_channels:
            raise ValueError(f"expected x of shape (b, {self.input_channels}, <{self.dim} spatial axes>), "
                             f"got {tuple(x.shape)}")
        return self.step(self.input_conv(x), self.initial_state(x) if state is None else state)


class ConvLSTM(nn.Module):
    """A :class:`ConvLSTMCell` run along one axis of a sequence of feature maps, from a zero state.

    Input ``(b, input_channels, S, *spatial)`` (sequence axis ``seq_dim``, default 2); output the hidden states of
    every step, ``(b, hidden_channels, S, *spatial)``. ``reverse=True`` runs from the last element to the first
    (the outputs stay in the input's order). Constructor arguments are :class:`ConvLSTMCell`'s plus ``seq_dim``.
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: Union[int, Sequence[int]] = 3,
                 conv_op: Type[_ConvNd] = nn.Conv2d, bias: bool = True, peephole: bool = True, seq_dim: int = 2):
        super().__init__()
        self.cell = ConvLSTMCell(input_channels, hidden_channels, kernel_size, conv_op, bias, peephole)
        self.seq_dim = seq_dim

    def forward(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        cell = self.cell
        if x.ndim != cell.dim + 3 or x.shape[1] != cell.input_channels:
            raise ValueError(f"expected x of shape (b, {cell.input_channels}, ...) with one sequence axis and "
                             f"{cell.dim} spatial axes, got {tuple(x.shape)}")
        batch, length = x.shape[0], x.shape[self.seq_dim]
        gates = unfold_sequence(cell.input_conv(fold_sequence(x, self.seq_dim)), batch, 1)  # (b, S, 4h, ...)
        steps = range(length - 1, -1, -1) if reverse else range(length)
        state = cell.initial_state(gates[:, 0, :cell.hidden_channels])
        hidden = [None] * length
        for t in steps:
            state = cell.step(gates[:, t], state)
            hidden[t] = state[0]
        return torch.stack(hidden, dim=self.seq_dim)


class BidirectionalConvLSTM(nn.Module):
    """Two :class:`ConvLSTM` layers (separate weights) along the sequence axis, one forward and one backward, so
    every position sees the whole sequence; their hidden states are merged per position.

    Args:
        input_channels: channels of the input sequence.
        hidden_channels: hidden channels of each direction.
        output_channels: channels of the merged output (default: ``input_channels``, so it can be added back to
            its input as a residual).
        kernel_size, conv_op, peephole, seq_dim: as in :class:`ConvLSTM`.
        merge: ``"concat"``: concatenate both directions and mix them with a 1x1 convolution; ``"sum"``: add
            them (a 1x1 convolution follows only where ``hidden_channels != output_channels``).
        bidirectional: ``False`` keeps only the forward pass (position t sees positions <= t), for ablations.

    Raises:
        ValueError: an unknown ``merge`` or a bad channel count / kernel.
    """

    def __init__(self, input_channels: int, hidden_channels: int, output_channels: Optional[int] = None,
                 kernel_size: Union[int, Sequence[int]] = 3, conv_op: Type[_ConvNd] = nn.Conv2d,
                 merge: str = "concat", bidirectional: bool = True, peephole: bool = True, seq_dim: int = 2):
        super().__init__()
        if merge not in MERGE_MODES:
            raise ValueError(f"merge must be one of {MERGE_MODES}, got {merge!r}")
        output_channels = input_channels if output_channels is None else output_channels
        if not isinstance(output_channels, int) or output_channels < 1:
            raise ValueError(f"output_channels must be a positive integer, got {output_channels!r}")
        self.merge, self.bidirectional, self.seq_dim = merge, bidirectional, seq_dim
        self.forward_lstm = ConvLSTM(input_channels, hidden_channels, kernel_size, conv_op, True, peephole, seq_dim)
        self.backward_lstm = ConvLSTM(input_channels, hidden_channels, kernel_size, conv_op, True, peephole,
                                      seq_dim) if bidirectional else None
        merged = 2 * hidden_channels if (bidirectional and merge == "concat") else hidden_channels
        self.projection = conv_op(merged, output_channels, 1) if merged != output_channels or merge == "concat" \
            else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, input_channels, S, *spatial)`` -> ``(b, output_channels, S, *spatial)``."""
        h = self.forward_lstm(x)
        if self.backward_lstm is not None:
            backward = self.backward_lstm(x, reverse=True)
            h = torch.cat((h, backward), dim=1) if self.merge == "concat" else h + backward
        if self.projection is None:
            return h
        return unfold_sequence(self.projection(fold_sequence(h, self.seq_dim)), x.shape[0], self.seq_dim)
