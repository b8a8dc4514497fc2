"""AttentionUNet: output shapes 2D/3D with and without deep supervision, gate range and attention maps on real
forward passes, equivalence with PlainConvUNet when every gate is open, plans-driven construction."""
from __future__ import annotations

import math

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

from nnunet_fracture.networks.attention_unet import (AttentionUNet, AttentionUNetDecoder,
                                                     ResidualEncoderAttentionUNet)


def arch_kwargs(dim: int, strides, features=(4, 8, 16, 16), deep_supervision: bool = False) -> dict:
    """PlainConvUNet arch_kwargs as nnU-Net's plans hold them (classes resolved)."""
    n = len(strides)
    return dict(input_channels=1, n_stages=n, features_per_stage=list(features[:n]),
                conv_op=nn.Conv2d if dim == 2 else nn.Conv3d, kernel_sizes=[[3] * dim] * n, strides=strides,
                n_conv_per_stage=[2] * n, num_classes=2, n_conv_per_stage_decoder=[2] * (n - 1), conv_bias=True,
                norm_op=nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d,
                norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
                nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=deep_supervision)


CASES = [  # dim, strides, input spatial shape, total stride per level (highest resolution first)
    (2, [[1, 1], [2, 2], [2, 2], [2, 2]], (32, 24), [(1, 1), (2, 2), (4, 4)]),
    (3, [[1, 1, 1], [2, 2, 2], [2, 2, 2]], (16, 16, 16), [(1, 1, 1), (2, 2, 2)]),
    (3, [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], (8, 32, 32), [(1, 1, 1), (1, 2, 2), (2, 4, 4)]),
]


@pytest.mark.parametrize("dim, strides, shape, level_strides", CASES)
def test_deep_supervision_outputs_highest_resolution_first(dim, strides, shape, level_strides):
    torch.manual_seed(0)
    net = AttentionUNet(**arch_kwargs(dim, strides, deep_supervision=True))
    out = net(torch.randn(2, 1, *shape))
    assert isinstance(out, list) and len(out) == len(strides) - 1
    for logits, total in zip(out, level_strides):
        assert logits.shape == (2, 2, *(s // k for s, k in zip(shape, total)))


@pytest.mark.parametrize("dim, strides, shape, level_strides", CASES)
def test_without_deep_supervision_and_in_eval_mode_one_tensor(dim, strides, shape, level_strides):
    net = AttentionUNet(**arch_kwargs(dim, strides, deep_supervision=False))
    x = torch.randn(1, 1, *shape)
    train_out = net(x)
    assert isinstance(train_out, torch.Tensor) and train_out.shape == (1, 2, *shape)
    net.eval()
    with torch.no_grad():
        eval_out = net(x)
    assert type(eval_out) is torch.Tensor and eval_out.shape == (1, 2, *shape)


@pytest.mark.parametrize("dim, strides, shape, level_strides", CASES)
def test_attention_maps_count_shape_and_range(dim, strides, shape, level_strides):
    torch.manual_seed(1)
    net = AttentionUNet(**arch_kwargs(dim, strides, deep_supervision=True))
    net.keep_attention_maps = True
    out = net(3 * torch.randn(2, 1, *shape))
    maps = net.attention_maps
    assert len(maps) == len(strides) - 1
    assert net.attention_strides() == level_strides
    for alpha, total in zip(maps, level_strides):
        assert alpha.shape == (2, 1, *(s // k for s, k in zip(shape, total)))
        assert 0.0 <= alpha.min().item() and alpha.max().item() <= 1.0
        assert alpha.grad_fn is None and not alpha.requires_grad  # detached: the graph is not kept alive
        assert alpha.std().item() > 0  # varies over space on a real input
    out[0].sum().backward()
    for gate in net.decoder.attention_gates:  # the gates are trained through the segmentation loss
        assert gate.psi.weight.grad is not None and gate.psi.weight.grad.abs().sum() > 0


def test_maps_are_recorded_only_when_asked():
    net = AttentionUNet(**arch_kwargs(2, [[1, 1], [2, 2]]))
    net(torch.randn(1, 1, 8, 8))
    assert net.attention_maps == []
    net.keep_attention_maps = True
    net(torch.randn(1, 1, 8, 8))
    assert len(net.attention_maps) == 1
    net.keep_attention_maps = False
    assert net.attention_maps == []


def test_gate_strides_follow_the_encoder_including_anisotropic():
    net = AttentionUNet(**arch_kwargs(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2]]))
    assert isinstance(net.decoder, AttentionUNetDecoder)
    # decoder stage 0 gates the skip next to the bottleneck (stride 2,2,2), stage 1 the highest resolution (1,2,2)
    assert [g.stride for g in net.decoder.attention_gates] == [(2, 2, 2), (1, 2, 2)]
    assert [g.theta_x.in_channels for g in net.decoder.attention_gates] == [8, 4]  # skip channels
    assert [g.phi_g.in_channels for g in net.decoder.attention_gates] == [16, 8]  # gating = coarser feature


def test_constant_gates_give_hand_computed_coefficients():
    # psi weight 0, bias b -> alpha = sigmoid(b) everywhere, whatever the input
    net = AttentionUNet(**arch_kwargs(2, [[1, 1], [2, 2], [2, 2]]))
    with torch.no_grad():
        for gate in net.decoder.attention_gates:
            gate.psi.weight.zero_()
            gate.psi.bias.fill_(1.0)
    net.keep_attention_maps = True
    net(torch.randn(1, 1, 16, 16))
    expected = 1 / (1 + math.exp(-1.0))  # 0.7310585786
    for alpha in net.attention_maps:
        assert torch.allclose(alpha, torch.full_like(alpha, expected))


def test_open_gates_reproduce_the_plain_unet():
    # alpha = sigmoid(60) == 1.0 in float32: the attention U-Net computes exactly PlainConvUNet's function
    torch.manual_seed(2)
    kwargs = arch_kwargs(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2]], deep_supervision=True)
    attention, plain = AttentionUNet(**kwargs), PlainConvUNet(**kwargs)
    with torch.no_grad():
        for gate in attention.decoder.attention_gates:
            gate.psi.weight.zero_()
            gate.psi.bias.fill_(60.0)
    missing, unexpected = attention.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and all("attention_gates" in k for k in missing)
    x = torch.randn(1, 1, 8, 16, 16)
    for a, p in zip(attention(x), plain(x)):
        assert torch.allclose(a, p, atol=1e-6)


def test_weights_trained_with_deep_supervision_load_into_an_inference_network():
    # nnU-Net trains with deep supervision and predicts with a network built without it
    kwargs = arch_kwargs(2, [[1, 1], [2, 2], [2, 2]], deep_supervision=True)
    trained = AttentionUNet(**kwargs)
    inference = AttentionUNet(**{**kwargs, "deep_supervision": False})
    inference.load_state_dict(trained.state_dict())
    trained.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled(False) does
    x = torch.randn(1, 1, 16, 16)
    trained.eval(), inference.eval()
    assert torch.equal(trained(x), inference(x))


def test_built_from_plans_arch_kwargs_by_dotted_name():
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = {"n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
            "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    net = get_network_from_plans("nnunet_fracture.networks.attention_unet.AttentionUNet", arch,
                                 ["conv_op", "norm_op", "dropout_op", "nonlin"], 1, 3, deep_supervision=True)
    assert isinstance(net, AttentionUNet)
    out = net(torch.randn(1, 1, 8, 16, 16))
    assert [o.shape for o in out] == [(1, 3, 8, 16, 16), (1, 3, 8, 8, 8)]
    assert net.compute_conv_feature_map_size((8, 16, 16)) > PlainConvUNet(
        1, 3, [4, 8, 16], nn.Conv3d, 3, [[1, 1, 1], [1, 2, 2], [2, 2, 2]], 2, 3, 2).compute_conv_feature_map_size(
        (8, 16, 16))


def test_residual_encoder_variant():
    kwargs = arch_kwargs(3, [[1, 1, 1], [2, 2, 2], [2, 2, 2]], deep_supervision=True)
    kwargs["n_blocks_per_stage"] = kwargs.pop("n_conv_per_stage")
    net = ResidualEncoderAttentionUNet(**kwargs)
    net.keep_attention_maps = True
    out = net(torch.randn(1, 1, 16, 16, 16))
    assert [o.shape for o in out] == [(1, 2, 16, 16, 16), (1, 2, 8, 8, 8)]
    assert [m.shape for m in net.attention_maps] == [(1, 1, 16, 16, 16), (1, 1, 8, 8, 8)]
