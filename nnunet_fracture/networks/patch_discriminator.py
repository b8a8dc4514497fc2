"""PatchGAN discriminator: a small fully convolutional network that scores each patch of an (image, segmentation)
pair as real or generated.

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks" (pix2pix, CVPR 2017, section
3.2.2): the discriminator sees the condition (here the CT patch) stacked with an output (here a segmentation, one
channel per class) and answers with a map of logits, one per receptive field, instead of one number per image; it
judges local structure - a plausible fracture outline next to the bone it lies in - and is cheap. Their 70 x 70
version is ``C64-C128-C256-C512`` (4 x 4 convolutions, stride 2 but the last, no normalisation in the first stage,
LeakyReLU 0.2) and a final 1-channel convolution.

The constructor follows the dynamic-network-architectures contract (``input_channels``, ``n_stages``,
``features_per_stage``, ``conv_op``, ``kernel_sizes``, ``strides``, ``norm_op`` ...), so 2D and 3D work alike.
With kernel 4 (or 3), stride 2 and padding 1 every stage halves an even axis exactly; the final stride-1
convolution of kernel 4 takes one voxel off (``n + 2 - 4 + 1``), of kernel 3 none.
"""
from __future__ import annotations

from typing import Optional, Sequence, Type, Union

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

IntOrSeq = Union[int, Sequence[int]]


def _per_stage(name: str, value: IntOrSeq, n_stages: int) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_stages
    if len(values) != n_stages or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be one integer >= 1 or {n_stages} of them (n_stages), got {value!r}")
    return values


class PatchDiscriminator(nn.Module):
    """``n_stages`` strided convolutions + a 1-channel convolution: ``(B, input_channels, *spatial)`` -> logits
    ``(B, 1, *smaller spatial)``.

    Args:
        input_channels: image channels + segmentation channels.
        n_stages: number of convolution stages before the final one (pix2pix's 70 x 70 PatchGAN: 4).
        features_per_stage: output channels per stage (one number for all, or one per stage).
        conv_op: ``nn.Conv2d`` or ``nn.Conv3d``.
        kernel_sizes: kernel size per stage (and of the final convolution: the last entry); padding
            ``(k - 1) // 2`` (pix2pix's 1 for k = 4).
        strides: stride per stage (the final convolution has stride 1).
        conv_bias: bias in the convolutions (pix2pix leaves it out where a normalisation follows).
        norm_op, norm_op_kwargs: normalisation after every stage but the first (pix2pix: none on the first).
        nonlin, nonlin_kwargs: activation after every stage (default LeakyReLU 0.2, pix2pix's).

    Raises:
        ValueError: for a non-convolution ``conv_op`` or a bad stage specification.
    """

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: IntOrSeq,
                 conv_op: Type[_ConvNd], kernel_sizes: IntOrSeq = 4, strides: IntOrSeq = 2, conv_bias: bool = True,
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 nonlin: Optional[Type[nn.Module]] = nn.LeakyReLU, nonlin_kwargs: Optional[dict] = None) -> None:
        super().__init__()
        if conv_op not in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
            raise ValueError(f"conv_op must be nn.Conv1d, nn.Conv2d or nn.Conv3d, got {conv_op!r}")
        if isinstance(input_channels, bool) or not isinstance(input_channels, int) or input_channels < 1:
            raise ValueError(f"input_channels must be an integer >= 1, got {input_channels!r}")
        if isinstance(n_stages, bool) or not isinstance(n_stages, int) or n_stages < 1:
            raise ValueError(f"n_stages must be an integer >= 1, got {n_stages!r}")
        features = _per_stage("features_per_stage", features_per_stage, n_stages)
        kernels = _per_stage("kernel_sizes", kernel_sizes, n_stages)
        stride_list = _per_stage("strides", strides, n_stages)
        nonlin_kwargs = {"negative_slope": 0.2, "inplace": True} if nonlin_kwargs is None and nonlin is nn.LeakyReLU \
            else (nonlin_kwargs or {})
        layers: list[nn.Module] = []
        channels = input_channels
        for stage, (out, kernel, stride) in enumerate(zip(features, kernels, stride_list)):
            layers.append(conv_op(channels, out, kernel, stride, padding=(kernel - 1) // 2, bias=conv_bias))
            if norm_op is not None and stage > 0:
                layers.append(norm_op(out, **(norm_op_kwargs or {})))
            if nonlin is not None:
                layers.append(nonlin(**nonlin_kwargs))
            channels = out
        layers.append(conv_op(channels, 1, kernels[-1], 1, padding=(kernels[-1] - 1) // 2, bias=True))
        self.layers = nn.Sequential(*layers)
        self.input_channels = input_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits of ``x`` ``(B, input_channels, *spatial)``.

        Raises:
            ValueError: when ``x`` has another number of channels.
        """
        if x.ndim < 3 or x.shape[1] != self.input_channels:
            raise ValueError(f"the discriminator takes (B, {self.input_channels}, *spatial), got {tuple(x.shape)}")
        return self.layers(x)
