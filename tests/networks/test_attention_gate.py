"""AttentionGate: hand-computed coefficients, range, 2D/3D and anisotropic strides, argument checks."""
import math

import pytest
import torch
from torch import nn

from nnunet_fracture.networks.attention_gate import AttentionGate


def _constant_gate(stride):
    gate = AttentionGate(nn.Conv2d, 1, 1, inter_channels=1, stride=stride)
    with torch.no_grad():
        gate.theta_x.weight.fill_(1.0)
        gate.phi_g.weight.fill_(1.0)
        gate.phi_g.bias.fill_(0.0)
        gate.psi.weight.fill_(1.0)
        gate.psi.bias.fill_(0.0)
    return gate


def test_hand_computed_coefficients():
    # alpha = sigmoid(relu(x + g)): x=1, g=-3 -> sigmoid(0) = 0.5; x=2, g=1 -> sigmoid(3)
    gate = _constant_gate(1)
    x = torch.tensor([[[[1.0, 2.0]]]])
    g = torch.tensor([[[[-3.0, 1.0]]]])
    out, alpha = gate(x, g)
    s3 = 1 / (1 + math.exp(-3))
    assert alpha.flatten().tolist() == pytest.approx([0.5, s3])
    assert out.flatten().tolist() == pytest.approx([0.5, 2 * s3])


def test_coarse_grid_and_upsampling():
    # stride 2: W_x sums each 2x2 block (all ones) -> 4; g = 0 -> alpha = sigmoid(4) everywhere
    gate = _constant_gate(2)
    out, alpha = gate(torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 2, 2))
    assert alpha.shape == (1, 1, 4, 4)
    assert torch.allclose(alpha, torch.full_like(alpha, 1 / (1 + math.exp(-4))))


@pytest.mark.parametrize("conv_op, x_shape, g_shape, stride", [
    (nn.Conv2d, (2, 8, 16, 16), (2, 16, 8, 8), 2),
    (nn.Conv3d, (2, 4, 8, 16, 16), (2, 8, 8, 8, 8), (1, 2, 2)),
    (nn.Conv3d, (1, 4, 9, 9, 9), (1, 8, 4, 4, 4), 2),  # edges not divisible by the stride
])
def test_shapes_and_range(conv_op, x_shape, g_shape, stride):
    torch.manual_seed(0)
    gate = AttentionGate(conv_op, x_shape[1], g_shape[1], stride=stride)
    x, g = 5 * torch.randn(x_shape), 5 * torch.randn(g_shape)
    out, alpha = gate(x, g)
    assert out.shape == x.shape and alpha.shape == (x_shape[0], 1, *x_shape[2:])
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert torch.allclose(out, alpha * x)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gate.parameters())


def test_argument_and_shape_errors():
    with pytest.raises(ValueError, match="skip_channels"):
        AttentionGate(nn.Conv2d, 0, 4)
    with pytest.raises(ValueError, match="stride"):
        AttentionGate(nn.Conv3d, 4, 4, stride=(2, 2))
    gate = AttentionGate(nn.Conv2d, 2, 2)
    with pytest.raises(ValueError, match=r"x \(1, 2, 4, 4\) and g \(2, 2, 2, 2\)"):
        gate(torch.zeros(1, 2, 4, 4), torch.zeros(2, 2, 2, 2))
