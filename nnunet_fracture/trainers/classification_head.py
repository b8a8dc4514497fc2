"""``nnUNetTrainerClsHead``: nnU-Net plus a "does this patch contain fracture?" head on the bottleneck.

- Network: whatever ``super().build_network_architecture(...)`` builds (nnU-Net's U-Net, or another plugin
  network when combined by inheritance), wrapped in
  :class:`~nnunet_fracture.networks.classification_head.ClassificationHeadNetwork`: GAP -> FC -> Dropout(0.2)
  -> logit on the bottleneck.
- Loss: ``weight_cls * BCE + weight_seg * L_seg`` (defaults 1.0 and 0.1,
  :class:`~nnunet_fracture.losses.classification_head.ClassificationHeadLoss`), ``L_seg`` being whatever
  ``super()._build_loss()`` builds (nnU-Net's Dice + CE, or the weak-box loss). The class target is read from
  the target patch (any foreground / box voxel, the ignore label excluded).
- Prediction: stock. In eval mode the network returns logits of ``P_final = P_class x P_seg``.
- Validation: nnU-Net's validation runs the network in eval mode, so the pseudo Dice and the validation loss are
  those of the fused prediction; the head's accuracy and ROC AUC are logged too
  (:mod:`~nnunet_fracture.training.class_head_validation`).

Combine with a network trainer by putting this trainer FIRST, so that its ``build_network_architecture`` wraps
the other network and its ``_build_loss`` wraps the other loss::

    class nnUNetTrainerAttentionClsHead(nnUNetTrainerClsHead, nnUNetTrainerAttentionUNet): ...

Architecture settings (``cls_pool_axes``, ``cls_hidden_features``, ``cls_dropout``) are plain class attributes,
not run-time settings: nnU-Net's predictor rebuilds the network from the trainer class alone.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from nnunet_fracture.losses.classification_head import ClassificationHeadLoss
from nnunet_fracture.networks.classification_head import ClassificationHeadNetwork
from nnunet_fracture.networks.unwrap import unwrap_network
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.trainers.slice_lstm import nnUNetTrainerSliceLSTM
from nnunet_fracture.training.class_head_validation import (CLS_LOG_KEYS, class_scores, log_class_numbers,
                                                             pop_class_scores)

__all__ = ["CLS_LOG_KEYS", "nnUNetTrainerClsHead", "nnUNetTrainerSliceLSTMClsHead"]


class nnUNetTrainerClsHead(nnUNetTrainerFracture):
    """Y-shaped multi-task training: segmentation plus a patch-level fracture classifier (see module docstring)."""

    settings = ("weight_cls", "weight_seg")
    weight_cls = 1.0
    weight_seg = 0.1

    #: spatial axes the head averages over (None: all, one logit per patch); architecture, not a setting
    cls_pool_axes: Optional[Tuple[int, ...]] = None
    #: hidden width of the head (None: the bottleneck's channels)
    cls_hidden_features: Optional[int] = None
    #: dropout before the logit layer
    cls_dropout = 0.2

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        net = super().build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                 num_output_channels, enable_deep_supervision)
        bottleneck = None
        if not getattr(net.encoder, "output_channels", None):
            bottleneck = configuration_manager.network_arch_init_kwargs["features_per_stage"][-1]
        return ClassificationHeadNetwork(net, bottleneck_channels=bottleneck, hidden_features=cls.cls_hidden_features,
                                         dropout=cls.cls_dropout, pool_axes=cls.cls_pool_axes,
                                         num_classes=num_output_channels)

    def initialize(self):
        super().initialize()
        # the predictor builds the network without the dataset; the activation travels in the state dict
        unwrap_network(self.network).activation = "sigmoid" if self.label_manager.has_regions else "softmax"

    def class_logits(self) -> torch.Tensor:
        """The class logits of the network's last forward pass (read through DDP / torch.compile wrappers)."""
        logits = unwrap_network(self.network).class_logits
        if logits is None:
            raise RuntimeError("the network has not run a forward pass yet; no class logits to read")
        return logits

    def _build_loss(self):
        return ClassificationHeadLoss(super()._build_loss(), weight_cls=self.weight_cls, weight_seg=self.weight_seg,
                                      ignore_label=self.label_manager.ignore_label,
                                      class_logits_source=self.class_logits)

    def validation_step(self, batch: dict) -> dict:  # plus the head's numbers (training/class_head_validation)
        target = batch["target"]
        full = (target[0] if isinstance(target, (list, tuple)) else target).clone()  # super() may edit it in place
        result = super().validation_step(batch)
        return {**result, **class_scores(self.class_logits().detach(), full, self.label_manager.ignore_label)}

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        scores, labels = pop_class_scores(val_outputs, self.is_ddp)
        super().on_validation_epoch_end(val_outputs)
        log_class_numbers(self, scores, labels)


class nnUNetTrainerSliceLSTMClsHead(nnUNetTrainerClsHead, nnUNetTrainerSliceLSTM):
    """The slice-LSTM network with a per-slice classification head: the head averages the bottleneck
    ``(b, C, S, h, w)`` over the in-plane axes only, giving one "this slice contains fracture" logit per slice;
    its target is "any fracture voxel in the slice", and ``P_final = P_slice x P_seg`` at inference."""

    cls_pool_axes = (1, 2)
