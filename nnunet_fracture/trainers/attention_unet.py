"""``nnUNetTrainerAttentionUNet``: nnU-Net's training with an attention U-Net (Oktay et al. 2018).

The network is built from the configuration's own ``arch_kwargs`` (any 2d / 3d_fullres / 3d_lowres plans,
nnUNetPlans or nnUNetPlansTiny): the plans' ``PlainConvUNet`` becomes
:class:`~nnunet_fracture.networks.attention_unet.AttentionUNet`, a ``ResidualEncoderUNet`` (ResEnc plans)
becomes :class:`~nnunet_fracture.networks.attention_unet.ResidualEncoderAttentionUNet`. Everything else (loss, deep
supervision, data, validation, prediction) is nnU-Net's; ``nnUNetv2_predict`` rebuilds the same network from the
checkpoint's trainer name. Export the learned attention coefficients with ``nnunet-fracture attention-maps``.
"""
from __future__ import annotations

from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from nnunet_fracture.trainers.base import nnUNetTrainerFracture

_NETWORKS = "nnunet_fracture.networks.attention_unet."
ATTENTION_NETWORKS = {
    "PlainConvUNet": _NETWORKS + "AttentionUNet",
    "ResidualEncoderUNet": _NETWORKS + "ResidualEncoderAttentionUNet",
    "AttentionUNet": _NETWORKS + "AttentionUNet",
    "ResidualEncoderAttentionUNet": _NETWORKS + "ResidualEncoderAttentionUNet",
}
"""Plans' network class (last dotted name) -> the attention network built in its place."""


def attention_network_class(plans_class_name: str, plans_name: str = "the plans") -> str:
    """Dotted path of the attention network that replaces the plans' ``network_class_name``.

    Raises:
        RuntimeError: the plans name a network without a U-Net encoder/decoder this trainer knows.
    """
    short = plans_class_name.rsplit(".", 1)[-1]
    if short not in ATTENTION_NETWORKS:
        raise RuntimeError(
            f"nnUNetTrainerAttentionUNet adds attention gates to PlainConvUNet or ResidualEncoderUNet plans, but "
            f"{plans_name} name {plans_class_name}. Fix: train with nnU-Net's default plans "
            f"(-p nnUNetPlans), ResEnc plans or nnUNetPlansTiny.")
    return ATTENTION_NETWORKS[short]


class nnUNetTrainerAttentionUNet(nnUNetTrainerFracture):
    """nnU-Net's U-Net with an attention gate on every skip connection; plans unchanged."""

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        network_class = attention_network_class(configuration_manager.network_arch_class_name,
                                                f"plans {plans_manager.plans_name}")
        return get_network_from_plans(network_class, configuration_manager.network_arch_init_kwargs,
                                      configuration_manager.network_arch_init_kwargs_req_import, num_input_channels,
                                      num_output_channels, allow_init=True, deep_supervision=enable_deep_supervision)
