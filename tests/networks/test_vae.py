"""ConvVAE: plans-style construction, one tensor in eval mode (what nnUNetPredictor needs), three in training."""
import pytest
import torch
from torch import nn

from nnunet_fracture.networks.vae import ConvVAE, VAEOutput

ARCH = dict(n_stages=3, features_per_stage=[4, 8, 8], conv_op=nn.Conv3d, kernel_sizes=[[3, 3, 3]] * 3,
            strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[1, 1, 1], n_conv_per_stage_decoder=[1, 1],
            conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
            nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})


def make(num_classes=2, **kw):
    torch.manual_seed(0)
    return ConvVAE(input_channels=1, num_classes=num_classes, patch_size=[8, 8, 16], latent_dim=6, **{**ARCH, **kw})


def test_training_mode_returns_reconstruction_mu_logvar():
    net = make().train()
    out = net(torch.randn(2, 1, 8, 8, 16))
    assert isinstance(out, VAEOutput)
    assert out.reconstruction.shape == (2, 1, 8, 8, 16)
    assert out.mu.shape == out.logvar.shape == (2, 6)
    assert net.bottleneck_shape == (8, 2, 2, 4)


def test_eval_mode_returns_one_error_map_per_head():
    net = make(num_classes=2).eval()
    x = torch.randn(3, 1, 8, 8, 16)
    with torch.no_grad():
        error = net(x)
        recon = net.vae_outputs(x).reconstruction
    assert isinstance(error, torch.Tensor) and error.shape == (3, 2, 8, 8, 16)
    torch.testing.assert_close(error[:, 0], (x - recon).abs()[:, 0])
    torch.testing.assert_close(error[:, 1], error[:, 0])
    with torch.no_grad():  # eval mode decodes mu: deterministic
        torch.testing.assert_close(net(x), error)


def test_deep_supervision_flag_exists_and_changes_nothing():
    net = make()
    net.decoder.deep_supervision = True  # what nnU-Net's set_deep_supervision_enabled does
    assert isinstance(net.eval()(torch.zeros(1, 1, 8, 8, 16)), torch.Tensor)


def test_errors():
    with pytest.raises(ValueError, match="not divisible"):
        ConvVAE(input_channels=1, num_classes=1, patch_size=[6, 8, 8], **ARCH)
    with pytest.raises(ValueError, match="latent_dim"):
        ConvVAE(input_channels=1, num_classes=1, patch_size=[8, 8, 8], latent_dim=0, **ARCH)
    with pytest.raises(ValueError, match="features_per_stage has 2 entries"):
        ConvVAE(input_channels=1, num_classes=1, patch_size=[8, 8, 8], **{**ARCH, "features_per_stage": [4, 8]})
    with pytest.raises(ValueError, match=r"input shape \(1, 1, 8, 8, 8\)"):
        make()(torch.zeros(1, 1, 8, 8, 8))


def test_2d():
    net = ConvVAE(input_channels=2, num_classes=1, patch_size=[8, 8], n_stages=2, features_per_stage=[4, 8],
                  conv_op=nn.Conv2d, kernel_sizes=3, strides=[1, 2], n_conv_per_stage=1).eval()
    assert net(torch.zeros(1, 2, 8, 8)).shape == (1, 1, 8, 8)


def test_spatial_latent():
    net = make(latent_channels=2).train()
    out = net(torch.randn(2, 1, 8, 8, 16))
    assert out.mu.shape == (2, 2 * 2 * 2 * 4) and net.latent_dim == 32  # 2 maps on the 2 x 2 x 4 bottleneck
    assert out.reconstruction.shape == (2, 1, 8, 8, 16)
    with pytest.raises(ValueError, match="latent_channels"):
        make(latent_channels=0)


def test_arguments_from_plain_and_residual_plans():
    from nnunet_fracture.networks.vae import arguments_from_plans

    plain = {"n_stages": 3, "features_per_stage": [8, 16, 32], "n_conv_per_stage": [2, 2, 2],
             "n_conv_per_stage_decoder": [2, 2]}
    assert arguments_from_plans(plain, (16, 16, 8), 32, None) == {
        **plain, "patch_size": [16, 16, 8], "latent_dim": 32, "latent_channels": None}
    residual = {"n_stages": 3, "features_per_stage": [8, 16, 32], "n_blocks_per_stage": [1, 3, 4],
                "n_conv_per_stage_decoder": [1, 1], "block": "BasicBlockD", "bottleneck_channels": None,
                "stem_channels": None}
    assert arguments_from_plans(residual, [16, 16, 8], 32, 4) == {
        "n_stages": 3, "features_per_stage": [8, 16, 32], "n_conv_per_stage": [1, 3, 4],
        "n_conv_per_stage_decoder": [1, 1], "patch_size": [16, 16, 8], "latent_dim": 32, "latent_channels": 4}
