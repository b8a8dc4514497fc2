"""PatchDiscriminator: output sizes by hand, pix2pix's layer order, argument errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunet_fracture.networks.patch_discriminator import PatchDiscriminator


def test_each_stage_halves_and_the_last_kernel_4_takes_one_voxel_off():
    d = PatchDiscriminator(3, 3, (4, 8, 16), nn.Conv3d, norm_op=nn.InstanceNorm3d)
    assert d(torch.zeros(2, 3, 48, 32, 16)).shape == (2, 1, 5, 3, 1)  # 48 -> 24 -> 12 -> 6 -> 5, 32 -> 4 -> 3, ...
    flat = PatchDiscriminator(2, 2, 4, nn.Conv2d, kernel_sizes=3)
    assert flat(torch.zeros(1, 2, 16, 16)).shape == (1, 1, 4, 4)  # 16 -> 8 -> 4, kernel 3 keeps 4


def test_no_normalisation_in_the_first_stage_and_leaky_relu_0_2():
    d = PatchDiscriminator(2, 3, 4, nn.Conv2d, norm_op=nn.InstanceNorm2d)
    kinds = [type(m) for m in d.layers]
    assert kinds == [nn.Conv2d, nn.LeakyReLU, nn.Conv2d, nn.InstanceNorm2d, nn.LeakyReLU, nn.Conv2d,
                     nn.InstanceNorm2d, nn.LeakyReLU, nn.Conv2d]
    assert d.layers[1].negative_slope == 0.2 and d.layers[-1].out_channels == 1 and d.layers[-1].stride == (1, 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"conv_op": nn.Linear}, "conv_op must be"), ({"input_channels": 0}, "input_channels"),
    ({"n_stages": 0}, "n_stages"), ({"features_per_stage": (4, 8)}, "features_per_stage"),
    ({"strides": 0}, "strides"),
])
def test_argument_errors(kwargs, match):
    arguments = {"input_channels": 2, "n_stages": 3, "features_per_stage": 4, "conv_op": nn.Conv2d, **kwargs}
    with pytest.raises(ValueError, match=match):
        PatchDiscriminator(**arguments)


def test_a_wrong_channel_count_quotes_the_shape():
    with pytest.raises(ValueError, match=r"takes \(B, 2, \*spatial\), got \(1, 3, 8, 8\)"):
        PatchDiscriminator(2, 1, 4, nn.Conv2d)(torch.zeros(1, 3, 8, 8))
