"""SliceLSTMUNet: 3D plans -> in-plane network, shapes with and without deep supervision, the shared
encoder/decoder contract, and which slices see which (bidirectional, forward-only, no LSTM)."""
from __future__ import annotations

import pytest
import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from nnunet_fracture.networks.attention_unet import AttentionUNetDecoder
from nnunet_fracture.networks.slice_lstm import SLICE_AXIS, SliceLSTMUNet, in_plane_arch_kwargs

# a 3d_fullres architecture as nnU-Net's plans write it (anisotropic: the first stage pools in-plane only)
ARCH_3D = {
    "n_stages": 3,
    "features_per_stage": [4, 8, 8],
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
    "n_conv_per_stage": [1, 1, 1],
    "n_conv_per_stage_decoder": [1, 1],
    "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None,
    "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}
REQ_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]


def build(deep_supervision: bool = True, num_classes: int = 2, **extra) -> SliceLSTMUNet:
    torch.manual_seed(0)
    return get_network_from_plans("nnunet_fracture.networks.slice_lstm.SliceLSTMUNet", {**ARCH_3D, **extra},
                                  REQ_IMPORT, 1, num_classes, allow_init=True, deep_supervision=deep_supervision)


def test_in_plane_arch_kwargs_drop_the_slice_axis():
    out = in_plane_arch_kwargs(nn.Conv3d, [[1, 3, 3], [3, 5, 3]], [[1, 1, 1], [2, 1, 2]], 2, nn.InstanceNorm3d,
                               nn.Dropout3d)
    assert out == {"conv_op": nn.Conv2d, "kernel_sizes": [[3, 3], [5, 3]], "strides": [[1, 1], [1, 2]],
                   "norm_op": nn.InstanceNorm2d, "dropout_op": nn.Dropout2d}
    out = in_plane_arch_kwargs(nn.Conv3d, 3, 2, 2, nn.BatchNorm3d, nn.Dropout)
    assert out["kernel_sizes"] == [[3, 3], [3, 3]] and out["strides"] == [[2, 2], [2, 2]]
    assert out["norm_op"] is nn.BatchNorm2d and out["dropout_op"] is nn.Dropout
    out = in_plane_arch_kwargs(nn.Conv2d, [[3, 3]], [[1, 1]], 1, nn.InstanceNorm2d)
    assert out["kernel_sizes"] == [[3, 3]] and out["norm_op"] is nn.InstanceNorm2d


@pytest.mark.parametrize("args, match", [
    ((nn.Conv1d, 3, 1, 1), "conv_op must be"),
    ((nn.Conv3d, [[3, 3]], 1, 1), "kernel_sizes entries must have 3"),
    ((nn.Conv3d, 3, [[1, 1, 1]], 2), "strides must have one entry per stage"),
])
def test_in_plane_arch_kwargs_errors(args, match):
    with pytest.raises(ValueError, match=match):
        in_plane_arch_kwargs(*args)


def test_output_shapes_with_and_without_deep_supervision():
    net = build(deep_supervision=True)
    assert isinstance(net, SliceLSTMUNet) and isinstance(net.decoder.decoder2d, AttentionUNetDecoder)
    assert net.encoder.strides == [[1, 1], [2, 2], [2, 2]]
    x = torch.randn(2, 1, 5, 16, 12)
    out = net(x)
    # in-plane downsampling only: every output keeps all 5 slices
    assert [tuple(o.shape) for o in out] == [(2, 2, 5, 16, 12), (2, 2, 5, 8, 6)]
    net.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
    assert net.decoder.decoder2d.deep_supervision is False
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 5, 16, 12)


def test_eval_mode_returns_one_tensor_and_keeps_attention_maps_on_request():
    net = build(deep_supervision=False, num_classes=1).eval()
    x = torch.randn(1, 1, 4, 8, 8)
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, 4, 8, 8)
    assert net.attention_maps == [] and net.keep_attention_maps is False
    net.keep_attention_maps = True  # the protocol of the attention-map export
    with torch.no_grad():
        net(x)
    maps = net.attention_maps  # highest resolution first, one channel, 5D
    assert [tuple(a.shape) for a in maps] == [(1, 1, 4, 8, 8), (1, 1, 4, 4, 4)]
    assert all(0 <= a.min() and a.max() <= 1 for a in maps)
    assert net.attention_strides() == [(1, 1, 1), (1, 2, 2)]
    net.keep_attention_maps = False
    assert net.attention_maps == []
    with pytest.raises(AttributeError, match="attention_gates=False"):
        build(attention_gates=False).keep_attention_maps = True


def test_encoder_skips_are_5d_and_decoder_takes_them():
    """The contract a classification head relies on: skips (b, C, S, h, w), bottleneck last."""
    net = build(deep_supervision=False)
    x = torch.randn(2, 1, 3, 16, 16)
    skips = net.encoder(x)
    assert [tuple(s.shape) for s in skips] == [(2, 4, 3, 16, 16), (2, 8, 3, 8, 8), (2, 8, 3, 4, 4)]
    assert net.encoder.output_channels == [4, 8, 8] and net.slice_axis == SLICE_AXIS == 2
    per_slice = skips[-1].mean(dim=(3, 4))  # a per-slice head pools the in-plane axes only
    assert per_slice.shape == (2, 8, 3)
    assert torch.equal(net.decoder(skips), net(x))


def perturbation_reach(net: SliceLSTMUNet, slice_index: int = 3, n_slices: int = 7) -> list[bool]:
    """Which output slices change when one input slice changes."""
    net.eval()
    torch.manual_seed(1)
    x = torch.randn(1, 1, n_slices, 8, 8)
    y = x.clone()
    y[:, :, slice_index] += 2.0
    with torch.no_grad():
        diff = (net(y) - net(x)).abs().amax(dim=(0, 1, 3, 4))
    return [bool(d > 1e-6) for d in diff]


def test_bidirectional_lstm_reaches_slices_on_both_sides():
    reach = perturbation_reach(build(deep_supervision=False))
    assert reach == [True] * 7


def test_forward_only_lstm_reaches_later_slices_only():
    reach = perturbation_reach(build(deep_supervision=False, lstm_bidirectional=False))
    assert reach == [False, False, False, True, True, True, True]


def test_without_lstm_every_slice_is_independent():
    net = build(deep_supervision=False, lstm_levels=0)
    assert len(net.encoder.lstms) == 0
    assert perturbation_reach(net) == [False, False, False, True, False, False, False]


def test_lstm_levels_and_options():
    net = build(lstm_levels=3, lstm_hidden_channels=2, lstm_merge="sum", attention_gates=False)
    assert net.encoder.lstm_stages == (2, 1, 0)
    assert net.encoder.lstms["0"].forward_lstm.cell.hidden_channels == 2
    assert type(net.decoder.decoder2d) is UNetDecoder
    out = net(torch.randn(1, 1, 3, 8, 8))
    assert [tuple(o.shape) for o in out] == [(1, 2, 3, 8, 8), (1, 2, 3, 4, 4)]
    assert build().encoder.lstm_stages == (2,)  # default: bottleneck only


def test_initialization_keeps_the_lstm_forget_bias():
    cell = build().encoder.lstms["2"].forward_lstm.cell
    hidden = cell.hidden_channels
    assert torch.all(cell.input_conv.bias[hidden:2 * hidden] == 1) and torch.all(cell.input_conv.bias[:hidden] == 0)


def test_gradients_reach_every_parameter():
    net = build()
    out = net(torch.randn(2, 1, 3, 8, 8))
    sum(o.sum() for o in out).backward()
    # attention-gate psi biases etc. all take part; the second-lowest seg layer only with deep supervision
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.parametrize("extra, match", [
    ({"lstm_levels": 4}, "lstm_levels must be an integer from 0"),
    ({"lstm_levels": -1}, "lstm_levels must be an integer from 0"),
    ({"lstm_hidden_channels": 0}, "lstm_hidden_channels must be a positive integer or None"),
    ({"lstm_merge": "max"}, "lstm_merge must be one of"),
])
def test_bad_lstm_settings_raise(extra, match):
    with pytest.raises(ValueError, match=match):
        build(**extra)


def test_2d_input_raises_naming_the_fix():
    with pytest.raises(ValueError, match="3d_fullres"):
        build()(torch.randn(1, 1, 8, 8))
