import math

import pytest
import torch

from nnunet_fracture.losses.window_mean import check_width, window_mean_logits


def logits_of(p):
    p = torch.as_tensor(p, dtype=torch.float64)
    return (torch.log(p) - torch.log1p(-p)).float()


def test_width_one_is_the_identity():
    x = torch.randn(2, 1, 3, 4, 5)
    assert window_mean_logits(x, 1) is x


def test_a_line_by_hand_with_the_border_repeated():
    x = logits_of([0.9, 0.1, 0.5]).reshape(1, 1, 3)
    mean = torch.sigmoid(window_mean_logits(x, 2)).reshape(-1)
    # windows [0.9, 0.1], [0.1, 0.5] and [0.5, 0.5] (the last voxel repeated past the border)
    assert mean.tolist() == pytest.approx([0.5, 0.3, 0.5], abs=1e-6)


def test_a_lattice_averages_to_one_half():
    p = torch.full((2, 2, 2), 0.01)
    p[0, 0, 0] = p[0, 1, 1] = p[1, 0, 1] = p[1, 1, 0] = 0.99  # the 3D checkerboard of one 2 x 2 x 2 block
    out = torch.sigmoid(window_mean_logits(logits_of(p).reshape(1, 1, 2, 2, 2), 2))
    assert out[0, 0, 0, 0, 0].item() == pytest.approx(0.5, abs=1e-6)  # the one window that lies inside


def test_a_square_of_a_2d_map_by_hand():
    p = torch.tensor([[0.8, 0.2, 0.2], [0.4, 0.6, 0.2], [0.2, 0.2, 0.2]])
    out = torch.sigmoid(window_mean_logits(logits_of(p).reshape(1, 1, 3, 3), 2)).reshape(3, 3)
    assert out[0, 0].item() == pytest.approx((0.8 + 0.2 + 0.4 + 0.6) / 4, abs=1e-6)
    assert out[1, 1].item() == pytest.approx((0.6 + 0.2 + 0.2 + 0.2) / 4, abs=1e-6)
    assert out[2, 2].item() == pytest.approx(0.2, abs=1e-6)  # a corner window of repeated border voxels


@pytest.mark.parametrize("value", [-800.0, 800.0])
def test_saturated_logits_keep_a_gradient_on_every_voxel_of_the_window(value):
    x = torch.full((1, 1, 2, 2, 2), value, requires_grad=True)
    out = window_mean_logits(x, 2)
    assert math.isfinite(out[0, 0, 0, 0, 0].item())
    out[0, 0, 0, 0, 0].backward()
    # logit of the mean of 8 equal probabilities is that logit: d out / d x_i = 1 / 8 for each voxel
    assert x.grad.reshape(-1).tolist() == pytest.approx([0.125] * 8, rel=1e-6)


def test_the_shape_is_kept():
    x = torch.randn(2, 1, 5, 4, 3)
    assert window_mean_logits(x, 3).shape == x.shape


@pytest.mark.parametrize("width", [0, -1, 1.5, True, "2"])
def test_a_bad_width_is_refused(width):
    with pytest.raises(ValueError, match="window width must be an integer >= 1"):
        check_width(width)
    with pytest.raises(ValueError, match="window width"):
        window_mean_logits(torch.zeros(1, 1, 2, 2), width)


def test_four_spatial_axes_are_refused():
    with pytest.raises(ValueError, match=r"1-3 spatial axes, got shape \(1, 1, 2, 2, 2, 2\)"):
        window_mean_logits(torch.zeros(1, 1, 2, 2, 2, 2), 2)
