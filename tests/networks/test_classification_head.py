"""ClassificationHead, ClassificationHeadNetwork and the fusion P_final = P_class x P_seg."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from nnunet_fracture.networks.classification_head import (LOGIT_BOUND, ClassificationHead, ClassificationHeadNetwork,
                                                          fuse_class_and_segmentation, log1mexp,
                                                          resize_class_logits)
from nnunet_fracture.networks.unwrap import unwrap_network


def unet(dim: int, num_classes: int = 2, deep_supervision: bool = True) -> PlainConvUNet:
    conv, norm = (nn.Conv2d, nn.InstanceNorm2d) if dim == 2 else (nn.Conv3d, nn.InstanceNorm3d)
    return PlainConvUNet(input_channels=1, n_stages=3, features_per_stage=[4, 8, 16], conv_op=conv, kernel_sizes=3,
                         strides=[1, 2, 2], n_conv_per_stage=1, num_classes=num_classes, n_conv_per_stage_decoder=1,
                         conv_bias=True, norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True},
                         nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=deep_supervision)


def hand_set_head(head: ClassificationHead) -> None:
    """fc = identity, logit = sum: the logit is the sum of the ReLU'd channel means."""
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(head.fc.in_features))
        head.fc.bias.zero_()
        head.logit.weight.fill_(1.0)
        head.logit.bias.zero_()


# --- the head --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, pool_axes, expected", [
    ((2, 8, 3, 4, 5), None, (2, 1, 1, 1, 1)),
    ((2, 8, 3, 4, 5), (1, 2), (2, 1, 3, 1, 1)),  # one logit per slice of (b, C, S, h, w)
    ((2, 8, 4, 6), None, (2, 1, 1, 1)),
    ((2, 8, 4, 6), (1,), (2, 1, 4, 1)),
])
def test_head_shapes(shape, pool_axes, expected):
    head = ClassificationHead(8, hidden_features=5, pool_axes=pool_axes)
    assert head(torch.randn(shape)).shape == expected


def test_head_value_by_hand():
    head = ClassificationHead(2, dropout=0.2).eval()
    hand_set_head(head)
    x = torch.zeros(1, 2, 2, 2)
    x[0, 0] = torch.tensor([[1.0, 3.0], [5.0, 7.0]])  # mean 4
    x[0, 1] = -1.0  # mean -1, removed by the ReLU
    assert head(x).item() == pytest.approx(4.0)
    per_row = ClassificationHead(2, pool_axes=(1,)).eval()
    hand_set_head(per_row)
    assert per_row(x).flatten().tolist() == pytest.approx([2.0, 6.0])  # rows: mean(1, 3), mean(5, 7)


def test_head_dropout_only_in_training():
    head = ClassificationHead(4, dropout=0.2)
    assert head.dropout.p == 0.2
    x = torch.randn(3, 4, 2, 2)
    head.eval()
    assert torch.equal(head(x), head(x))


@pytest.mark.parametrize("kwargs", [dict(in_channels=0), dict(in_channels=4, hidden_features=0),
                                    dict(in_channels=4, dropout=1.0), dict(in_channels=4, dropout=-0.1),
                                    dict(in_channels=4, pool_axes=()), dict(in_channels=4, pool_axes=(1, 1)),
                                    dict(in_channels=4, pool_axes=(-1,))])
def test_head_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ClassificationHead(**kwargs)


def test_head_rejects_too_few_axes():
    with pytest.raises(ValueError, match=r"\(2, 4, 3\).*pool_axes"):
        ClassificationHead(4, pool_axes=(1,))(torch.randn(2, 4, 3))


# --- the wrapper network ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("deep_supervision", [True, False])
def test_wrapper_training_returns_segmentation_unchanged(dim, deep_supervision):
    torch.manual_seed(0)
    net = unet(dim, deep_supervision=deep_supervision)
    wrapper = ClassificationHeadNetwork(net).train()
    x = torch.randn((2, 1) + (16,) * dim)
    output = wrapper(x)
    reference = net(x)  # the same network called directly (no dropout in it: deterministic)
    if deep_supervision:
        assert isinstance(output, list) and len(output) == 2
        assert all(torch.allclose(a, b) for a, b in zip(output, reference))
    else:
        assert isinstance(output, torch.Tensor) and torch.allclose(output, reference)
    assert wrapper.class_logits.shape == (2, 1) + (1,) * dim
    assert wrapper.encoder is net.encoder and wrapper.decoder is net.decoder


@pytest.mark.parametrize("dim", [2, 3])
def test_wrapper_eval_returns_fused_tensor_and_follows_deep_supervision_switch(dim):
    wrapper = ClassificationHeadNetwork(unet(dim, deep_supervision=True))
    x = torch.randn((1, 1) + (16,) * dim)
    trainer = SimpleNamespace(is_ddp=False, network=wrapper)
    nnUNetTrainer.set_deep_supervision_enabled(trainer, False)  # what nnU-Net does before prediction
    assert wrapper.net.decoder.deep_supervision is False
    wrapper.eval()
    with torch.no_grad():
        fused = wrapper(x)
        seg = wrapper.net(x)
    assert isinstance(fused, torch.Tensor) and fused.shape == (1, 2) + (16,) * dim
    expected = torch.sigmoid(wrapper.class_logits) * torch.softmax(seg, 1)
    assert torch.allclose(torch.softmax(fused, 1)[:, 1:], expected[:, 1:], atol=1e-6)
    nnUNetTrainer.set_deep_supervision_enabled(trainer, True)  # online validation: a list, every scale fused
    with torch.no_grad():
        fused = wrapper(x)
    assert isinstance(fused, list) and [f.shape[2:] for f in fused] == [(16,) * dim, (8,) * dim]


def test_wrapper_default_activation_and_state_dict_round_trip():
    assert ClassificationHeadNetwork(unet(2, num_classes=1)).activation == "sigmoid"
    trained = ClassificationHeadNetwork(unet(2, num_classes=2))
    assert trained.activation == "softmax"
    trained.activation = "sigmoid"  # a region dataset with two regions: only the trainer knows
    fresh = ClassificationHeadNetwork(unet(2, num_classes=2))
    fresh.load_state_dict(trained.state_dict())
    assert fresh.activation == "sigmoid"
    with pytest.raises(ValueError, match="activation"):
        fresh.activation = "tanh"


def test_wrapper_rejects_networks_outside_the_contract():
    with pytest.raises(ValueError, match="encoder"):
        ClassificationHeadNetwork(nn.Conv2d(1, 2, 3))

    class NoChannels(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = nn.Identity(), nn.Identity()

    with pytest.raises(ValueError, match="bottleneck_channels"):
        ClassificationHeadNetwork(NoChannels())
    assert ClassificationHeadNetwork(NoChannels(), bottleneck_channels=4).head.fc.in_features == 4


def test_unwrap_network_through_torch_compile():
    wrapper = ClassificationHeadNetwork(unet(2))
    assert unwrap_network(torch.compile(wrapper)) is wrapper
    assert unwrap_network(wrapper) is wrapper


def test_per_slice_head_on_the_slice_lstm_network():
    slice_lstm = pytest.importorskip("nnunet_fracture.networks.slice_lstm")
    net = slice_lstm.SliceLSTMUNet(input_channels=1, n_stages=2, features_per_stage=[4, 8], conv_op=nn.Conv3d,
                                   kernel_sizes=[[1, 3, 3], [1, 3, 3]], strides=[[1, 1, 1], [1, 2, 2]],
                                   n_conv_per_stage=1, num_classes=2, n_conv_per_stage_decoder=1,
                                   norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU, deep_supervision=False)
    wrapper = ClassificationHeadNetwork(net, pool_axes=(1, 2)).eval()
    with torch.no_grad():
        fused = wrapper(torch.randn(2, 1, 5, 8, 8))
        seg = net(torch.randn(2, 1, 5, 8, 8))
    assert wrapper.class_logits.shape == (2, 1, 5, 1, 1)  # one logit per slice
    assert fused.shape == seg.shape == (2, 2, 5, 8, 8)


# --- fusion ----------------------------------------------------------------------------------------------------
def test_fusion_by_hand_softmax_two_and_three_classes():
    c = torch.zeros(1, 1, 1, 1)  # P_class = 0.5
    fused = fuse_class_and_segmentation(torch.zeros(1, 2, 1, 1), c)  # q = (0.5, 0.5)
    assert torch.softmax(fused, 1).flatten().tolist() == pytest.approx([0.75, 0.25])
    assert fused.flatten().tolist() == pytest.approx([math.log(0.75), math.log(0.25)])
    seg = torch.log(torch.tensor([0.2, 0.3, 0.5])).reshape(1, 3, 1, 1)
    fused = fuse_class_and_segmentation(seg, c)
    # foreground classes scaled alike, background takes the rest: 1 - 0.5 * 0.8, 0.5 * 0.3, 0.5 * 0.5
    assert torch.softmax(fused, 1).flatten().tolist() == pytest.approx([0.6, 0.15, 0.25])


def test_fusion_by_hand_sigmoid_regions():
    c = torch.full((1, 1, 1), math.log(3.0))  # P_class = 0.75
    seg = torch.tensor([0.0, math.log(1 / 3)]).reshape(1, 2, 1)  # sigmoid: 0.5, 0.25
    fused = fuse_class_and_segmentation(seg, c, "sigmoid")
    assert torch.sigmoid(fused).flatten().tolist() == pytest.approx([0.375, 0.1875])
    assert fused[0, 0, 0].item() == pytest.approx(math.log(0.375 / 0.625))


EXTREMES = [-1e4, -200.0, -60.0, -30.0, -5.0, 0.0, 5.0, 30.0, 60.0, 200.0, 1e4]


def extreme_grid(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair (class logit, segmentation logit) from EXTREMES, plus random logits in the other channels."""
    n = len(EXTREMES)
    c = torch.tensor(EXTREMES).repeat_interleave(n).reshape(1, 1, n * n)
    seg = torch.randn(1, channels, n * n, generator=torch.Generator().manual_seed(0)) * 3
    seg[0, -1] = torch.tensor(EXTREMES).repeat(n)
    return seg, c


@pytest.mark.parametrize("channels", [2, 3])
def test_fusion_equals_product_softmax_extreme_logits(channels):
    seg, c = extreme_grid(channels)
    fused = fuse_class_and_segmentation(seg, c, "softmax")
    assert fused.dtype == torch.float32 and torch.isfinite(fused).all() and fused.abs().max() <= LOGIT_BOUND
    p = torch.sigmoid(c.double())
    q = torch.softmax(seg.double(), 1)
    expected = torch.cat([1 - p * (1 - q[:, :1]), p * q[:, 1:]], 1)
    assert torch.allclose(torch.softmax(fused.double(), 1), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("channels", [1, 2])
def test_fusion_equals_product_sigmoid_extreme_logits(channels):
    seg, c = extreme_grid(channels)
    fused = fuse_class_and_segmentation(seg, c, "sigmoid")
    assert fused.dtype == torch.float32 and torch.isfinite(fused).all() and fused.abs().max() <= LOGIT_BOUND
    expected = torch.sigmoid(c.double()) * torch.sigmoid(seg.double())
    assert torch.allclose(torch.sigmoid(fused.double()), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_fusion_under_autocast(activation):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    seg, c = extreme_grid(2)
    seg, c = seg.to(device), c.to(device)
    low = torch.float16 if device == "cuda" else torch.bfloat16
    with torch.autocast(device):
        fused = fuse_class_and_segmentation(seg.to(low), c.to(low), activation)
    assert fused.dtype == torch.float32 and torch.isfinite(fused).all()
    p, s = torch.sigmoid(c.to(low).double()), seg.to(low).double()  # the same low-precision inputs
    if activation == "softmax":
        assert torch.allclose(torch.softmax(fused.double(), 1)[:, 1:], p * torch.softmax(s, 1)[:, 1:],
                              rtol=1e-5, atol=1e-7)
    else:
        assert torch.allclose(torch.sigmoid(fused.double()), p * torch.sigmoid(s), rtol=1e-5, atol=1e-7)


def test_fusion_rejects_bad_inputs():
    with pytest.raises(ValueError, match="activation"):
        fuse_class_and_segmentation(torch.zeros(1, 2, 3), torch.zeros(1, 1, 1), "tanh")
    with pytest.raises(ValueError, match=r"\(1, 1, 3\).*sigmoid"):
        fuse_class_and_segmentation(torch.zeros(1, 1, 3), torch.zeros(1, 1, 1), "softmax")
    with pytest.raises(ValueError, match=r"\(2, 1, 1\).*\(1, 2, 3\)"):
        fuse_class_and_segmentation(torch.zeros(1, 2, 3), torch.zeros(2, 1, 1))


def test_log1mexp_by_hand():
    x = torch.tensor([math.log(0.5), math.log(0.999), math.log(1e-6), -1e-7, 0.0])
    out = log1mexp(x)
    assert out[:3].tolist() == pytest.approx([math.log(0.5), math.log(0.001), math.log(1 - 1e-6)], rel=1e-4)
    assert out[3].item() == pytest.approx(math.log(1e-7), rel=1e-3)
    assert torch.isfinite(out).all()


def test_resize_class_logits_max_pools_slices():
    per_slice = torch.tensor([1.0, -2.0, -3.0, 4.0]).reshape(1, 1, 4, 1, 1)
    assert resize_class_logits(per_slice, (2, 8, 8)).flatten().tolist() == [1.0, 4.0]  # slice pairs (0,1), (2,3)
    assert resize_class_logits(per_slice, (4, 8, 8)) is per_slice
    patch = torch.zeros(1, 1, 1, 1, 1)
    assert resize_class_logits(patch, (4, 8, 8)) is patch  # broadcasts as it is
    with pytest.raises(ValueError, match="spatial axes"):
        resize_class_logits(patch, (4, 8))
