"""ConvLSTMCell / ConvLSTM / BidirectionalConvLSTM against hand-computed steps on 1x1 feature maps."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnunet_fracture.networks.conv_lstm import (BidirectionalConvLSTM, ConvLSTM, ConvLSTMCell, fold_sequence,
                                                unfold_sequence)


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def set_cell(cell: ConvLSTMCell, wx, bx, wh, peephole=None) -> None:
    """1 input and 1 hidden channel, kernel 1: gate weights in the order i, f, c, o."""
    with torch.no_grad():
        cell.input_conv.weight.copy_(torch.tensor(wx, dtype=torch.float32).view(4, 1, 1, 1))
        cell.input_conv.bias.copy_(torch.tensor(bx, dtype=torch.float32))
        cell.hidden_conv.weight.copy_(torch.tensor(wh, dtype=torch.float32).view(4, 1, 1, 1))
        if peephole is not None:
            cell.peephole.copy_(torch.tensor(peephole, dtype=torch.float32).view(3, 1))


def reference_sequence(xs, wx, bx, wh):
    """Scalar LSTM without peepholes, written out by hand: the hidden state after each input."""
    h = c = 0.0
    out = []
    for x in xs:
        i = sigmoid(wx[0] * x + wh[0] * h + bx[0])
        f = sigmoid(wx[1] * x + wh[1] * h + bx[1])
        g = math.tanh(wx[2] * x + wh[2] * h + bx[2])
        o = sigmoid(wx[3] * x + wh[3] * h + bx[3])
        c = f * c + i * g
        h = o * math.tanh(c)
        out.append(h)
    return out


WX, BX, WH = (0.5, -1.0, 2.0, 1.0), (0.1, 1.0, 0.0, -0.5), (1.0, 0.5, -1.0, 2.0)


def test_cell_step_with_peepholes_matches_hand_computation():
    cell = ConvLSTMCell(1, 1, kernel_size=1)
    set_cell(cell, WX, BX, WH, peephole=(0.2, 0.3, -0.4))
    x, h0, c0 = 2.0, 0.5, 1.0
    # i = s(0.5*2 + 1*0.5 + 0.2*1 + 0.1), f = s(-1*2 + 0.5*0.5 + 0.3*1 + 1), g = tanh(2*2 - 1*0.5)
    c1 = sigmoid(-0.45) * 1.0 + sigmoid(1.8) * math.tanh(3.5)
    # o peeks at the NEW cell state: s(1*2 + 2*0.5 - 0.4*c1 - 0.5)
    h1 = sigmoid(2.5 - 0.4 * c1) * math.tanh(c1)
    h, c = cell(torch.full((1, 1, 1, 1), x), (torch.full((1, 1, 1, 1), h0), torch.full((1, 1, 1, 1), c0)))
    assert c.item() == pytest.approx(c1, abs=1e-6)
    assert h.item() == pytest.approx(h1, abs=1e-6)


def test_cell_starts_from_zero_state_and_initial_values():
    cell = ConvLSTMCell(2, 3, kernel_size=3)
    assert cell.input_conv.bias[3:6].tolist() == [1.0, 1.0, 1.0]  # forget gate
    assert cell.input_conv.bias[:3].abs().sum() == 0 and cell.peephole.abs().sum() == 0
    plain = ConvLSTMCell(1, 1, kernel_size=1, peephole=False)
    set_cell(plain, WX, BX, WH)
    h, c = plain(torch.full((1, 1, 1, 1), 2.0))
    # zero state: c = s(0.5*2 + 0.1) * tanh(2*2), h = s(1*2 - 0.5) * tanh(c)
    expected_c = sigmoid(1.1) * math.tanh(4.0)
    assert c.item() == pytest.approx(expected_c, abs=1e-6)
    assert h.item() == pytest.approx(sigmoid(1.5) * math.tanh(expected_c), abs=1e-6)
    h, c = cell(torch.randn(2, 2, 5, 4))
    assert h.shape == c.shape == (2, 3, 5, 4)


def test_layer_runs_forward_and_reverse_along_the_sequence_axis():
    layer = ConvLSTM(1, 1, kernel_size=1, peephole=False)
    set_cell(layer.cell, WX, BX, WH)
    xs = [1.0, -0.5, 2.0]
    x = torch.tensor(xs).view(1, 1, 3, 1, 1)  # (b, c, S, h, w)
    forward = layer(x)[0, 0, :, 0, 0].tolist()
    assert forward == pytest.approx(reference_sequence(xs, WX, BX, WH), abs=1e-6)
    backward = layer(x, reverse=True)[0, 0, :, 0, 0].tolist()
    assert backward == pytest.approx(reference_sequence(xs[::-1], WX, BX, WH)[::-1], abs=1e-6)


def test_layer_sequence_axis_is_settable():
    layer = ConvLSTM(1, 1, kernel_size=1, peephole=False, seq_dim=4)
    set_cell(layer.cell, WX, BX, WH)
    xs = [0.3, 1.5]
    out = layer(torch.tensor(xs).view(1, 1, 1, 1, 2))
    assert out.shape == (1, 1, 1, 1, 2)
    assert out.flatten().tolist() == pytest.approx(reference_sequence(xs, WX, BX, WH), abs=1e-6)


@pytest.mark.parametrize("merge", ["sum", "concat"])
def test_bidirectional_merges_both_directions(merge: str):
    net = BidirectionalConvLSTM(1, 1, output_channels=1, kernel_size=1, merge=merge, peephole=False)
    set_cell(net.forward_lstm.cell, WX, BX, WH)
    wx_b, bx_b, wh_b = (1.0, 0.2, -1.0, 0.5), (0.0, 0.5, 0.3, 0.0), (0.5, 0.5, 0.5, 0.5)
    set_cell(net.backward_lstm.cell, wx_b, bx_b, wh_b)
    xs = [1.0, -0.5, 2.0, 0.0]
    fwd = reference_sequence(xs, WX, BX, WH)
    bwd = reference_sequence(xs[::-1], wx_b, bx_b, wh_b)[::-1]
    if merge == "sum":
        assert net.projection is None  # hidden == output channels
        expected = [a + b for a, b in zip(fwd, bwd)]
    else:
        with torch.no_grad():
            net.projection.weight.copy_(torch.tensor([1.0, -2.0]).view(1, 2, 1, 1))
            net.projection.bias.fill_(0.25)
        expected = [a - 2 * b + 0.25 for a, b in zip(fwd, bwd)]
    out = net(torch.tensor(xs).view(1, 1, 4, 1, 1))
    assert out[0, 0, :, 0, 0].tolist() == pytest.approx(expected, abs=1e-6)


def test_bidirectional_shapes_and_reach():
    torch.manual_seed(0)
    net = BidirectionalConvLSTM(3, 4, output_channels=5, kernel_size=3).eval()
    x = torch.randn(2, 3, 6, 4, 4)
    out = net(x)
    assert out.shape == (2, 5, 6, 4, 4)
    y = x.clone()
    y[:, :, 2] += 1.0
    changed = (net(y) - out).abs().amax(dim=(0, 1, 3, 4))
    assert (changed > 1e-6).all()  # every position sees the perturbed one, before and after it
    forward_only = BidirectionalConvLSTM(3, 4, kernel_size=3, bidirectional=False).eval()
    changed = (forward_only(y) - forward_only(x)).abs().amax(dim=(0, 1, 3, 4))
    assert changed[:2].max() == 0 and (changed[2:] > 1e-6).all()


def test_fold_and_unfold_sequence_are_inverse():
    x = torch.arange(2 * 3 * 4 * 5).float().view(2, 3, 4, 5)
    folded = fold_sequence(x, 2)
    assert folded.shape == (8, 3, 5)
    assert torch.equal(folded[1], x[0, :, 1])  # batch-major: case 0 slices first
    assert torch.equal(unfold_sequence(folded, 2, 2), x)


@pytest.mark.parametrize("kwargs, match", [
    ({"input_channels": 0, "hidden_channels": 1}, "input_channels"),
    ({"input_channels": 1, "hidden_channels": 1, "kernel_size": 2}, "odd"),
    ({"input_channels": 1, "hidden_channels": 1, "kernel_size": (3, 3, 3)}, "kernel_size"),
])
def test_cell_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvLSTMCell(**kwargs)


def test_bad_merge_and_shapes_raise():
    with pytest.raises(ValueError, match="merge must be one of"):
        BidirectionalConvLSTM(1, 1, merge="mean")
    with pytest.raises(ValueError, match=r"expected x of shape \(b, 2"):
        ConvLSTM(2, 1)(torch.zeros(1, 3, 4, 2, 2))
    with pytest.raises(ValueError, match="expected x of shape"):
        ConvLSTMCell(2, 1)(torch.zeros(1, 2, 4, 2, 2))
    assert isinstance(ConvLSTMCell(1, 1, conv_op=nn.Conv3d).input_conv, nn.Conv3d)
