"""Weak-box training with the plugin's networks: each trainer is the weak-box trainer (loss, box-aware sampling,
transforms, validation) combined by inheritance with a network trainer (architecture only). Nothing is copied:
the classes below have no body. The weak-box trainer comes first so its loss and validation win; the network
trainer supplies ``build_network_architecture`` (and what the network needs, such as deep-supervision scales).
"""
from __future__ import annotations

from nnunet_fracture.trainers.attention_unet import nnUNetTrainerAttentionUNet
from nnunet_fracture.trainers.classification_head import nnUNetTrainerClsHead
from nnunet_fracture.trainers.slice_lstm import nnUNetTrainerSliceLSTM
from nnunet_fracture.trainers.weak_box import nnUNetTrainerWeakBBox


class nnUNetTrainerWeakBBoxAttention(nnUNetTrainerWeakBBox, nnUNetTrainerAttentionUNet):
    """Weak-box training (box losses, box-aware sampling and validation) of the attention U-Net."""


class nnUNetTrainerWeakBBoxClsHead(nnUNetTrainerClsHead, nnUNetTrainerWeakBBox):
    """Weak-box training with a patch-level classification head: ``weight_cls * BCE + weight_seg * WeakBoxLoss``.

    The exception to "weak-box trainer first": the classification-head trainer wraps the network *and* the loss
    of the trainer after it in the MRO (``super()._build_loss()`` is the weak-box loss, which does not call
    ``super()`` itself), so it must come first; the weak-box trainer still supplies sampling, transforms and
    box-aware validation (the head's accuracy and AUC are logged on top).
    """


class nnUNetTrainerWeakBBoxSliceLSTM(nnUNetTrainerWeakBBox, nnUNetTrainerSliceLSTM):
    """Weak-box training of the 2.5D slice-LSTM U-Net (in-plane deep-supervision scales come from the
    slice-LSTM trainer; the weak-box loss, sampling and validation are unchanged)."""
