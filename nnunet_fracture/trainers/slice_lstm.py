"""``nnUNetTrainerSliceLSTM``: the 2.5D slice-LSTM U-Net (:mod:`nnunet_fracture.networks.slice_lstm`) trained on
nnU-Net's 3d_fullres patches.

The network is built from the 3D plans by keeping only the in-plane kernels and strides; the slices (first axis
of the patch) are never pooled, so the deep-supervision targets are downsampled in-plane only. Everything else
(data, augmentation, loss, validation, prediction) is stock, and all slices of a patch are predicted at once.

The architecture settings are written into the configuration's ``arch_kwargs`` (with the network class name), and
nnU-Net copies the plans into the results folder, so ``nnUNetv2_predict`` rebuilds exactly the trained network even
when the settings came from ``NNUNET_FRACTURE_SETTINGS``.
"""
from __future__ import annotations

import copy

import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.training.settings import resolve_settings

NETWORK = "nnunet_fracture.networks.slice_lstm.SliceLSTMUNet"
# trainer setting -> SliceLSTMUNet argument (same names; lstm_hidden_channels 0 means None)
ARCH_SETTINGS = ("lstm_levels", "lstm_hidden_channels", "lstm_kernel_size", "lstm_merge", "lstm_bidirectional",
                 "attention_gates")


def _require_slices(configuration_manager: ConfigurationManager, trainer: str, configuration: str = "") -> None:
    if len(configuration_manager.patch_size) != 3:
        raise RuntimeError(
            f"{trainer} runs an LSTM along the slices of 3D patches, but configuration {configuration!r} has "
            f"{len(configuration_manager.patch_size)}D patches {list(configuration_manager.patch_size)}. Fix: "
            f"train with 3d_fullres (nnUNetv2_train DATASET 3d_fullres FOLD -tr {trainer}).")


class nnUNetTrainerSliceLSTM(nnUNetTrainerFracture):
    """2D encoder per slice, bidirectional ConvLSTM along the slices, attention-gated 2D decoder per slice.

    Settings: ``lstm_levels`` (deepest encoder levels with an LSTM; 1 = bottleneck only, 0 = plain 2.5D U-Net),
    ``lstm_hidden_channels`` (per direction; 0 = the level's feature count), ``lstm_kernel_size``, ``lstm_merge``
    (``concat`` or ``sum``), ``lstm_bidirectional``, ``attention_gates``.
    """

    settings = ARCH_SETTINGS
    lstm_levels = 1
    lstm_hidden_channels = 0
    lstm_kernel_size = 3
    lstm_merge = "concat"
    lstm_bidirectional = True
    attention_gates = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        _require_slices(self.configuration_manager, type(self).__name__, configuration)
        # record the network in the plans that nnU-Net saves beside the checkpoints (read back by the predictor)
        architecture = self.configuration_manager.configuration["architecture"]
        architecture["network_class_name"] = NETWORK
        architecture["arch_kwargs"].update(self._arch_settings({k: getattr(self, k) for k in ARCH_SETTINGS}))
        self.plans_manager.plans["configurations"][configuration]["architecture"] = copy.deepcopy(architecture)

    @staticmethod
    def _arch_settings(values: dict) -> dict:
        out = {k: values[k] for k in ARCH_SETTINGS}
        out["lstm_hidden_channels"] = out["lstm_hidden_channels"] or None
        return out

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        _require_slices(configuration_manager, cls.__name__)
        arch_kwargs = dict(configuration_manager.network_arch_init_kwargs)
        if "n_conv_per_stage" not in arch_kwargs:
            raise RuntimeError(
                f"{cls.__name__} builds plain convolution stages from the plans' n_conv_per_stage, which these plans "
                f"({configuration_manager.network_arch_class_name}) do not have. Fix: use the default nnUNetPlans "
                f"(or tiny plans made from them), not residual-encoder plans.")
        if not all(k in arch_kwargs for k in ARCH_SETTINGS):  # plans not written by this trainer
            arch_kwargs = {**cls._arch_settings(resolve_settings(cls)[0]), **arch_kwargs}
        return get_network_from_plans(NETWORK, arch_kwargs, configuration_manager.network_arch_init_kwargs_req_import,
                                      num_input_channels, num_output_channels, allow_init=True,
                                      deep_supervision=enable_deep_supervision)

    def _get_deep_supervision_scales(self):
        """nnU-Net's scales from the 3D pooling with the slice axis kept at 1 (the slices are never pooled)."""
        scales = super()._get_deep_supervision_scales()
        return None if scales is None else [[1.0, *(float(f) for f in s[1:])] for s in scales]
