"""``nnUNetTrainerPresentDice``: nnU-Net's Dice + CE with the Dice taken only over targets that are present.

For sparse labels - a self-training round's pseudo-masks, most of each box nnU-Net's ``ignore`` - where the
stock loss can settle on predicting nothing: an empty patch scores Dice 1 for it
(:mod:`nnunet_fracture.losses.present_dice`). Everything else is nnU-Net's: cross entropy with the ignore label,
the same smooth, ``batch_dice`` from the plans, deep supervision with nnU-Net's scale weights. On targets that
hold foreground the Dice term equals nnU-Net's (shifted by 1: ``1 - Dice`` instead of ``-Dice``).

For sparse labels only: the empty-patch reward it removes is also what keeps a model trained on full masks from
painting healthy bone (quality bench, full masks, one seed: false-positive voxels per fracture-free case 151 ->
1,142, whole-volume Dice 0.774 -> 0.540).
"""
from __future__ import annotations

from nnunet_fracture.losses import PresentDiceLoss, RegionAndPixelLoss
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.training.loss_wrapping import deep_supervised, nnunet_scale_weights


class nnUNetTrainerPresentDice(nnUNetTrainerFracture):
    """Dice over present targets + nnU-Net's cross entropy (or BCE for regions), deep-supervised."""

    def _build_loss(self):
        regions = self.label_manager.has_regions
        dice = PresentDiceLoss(activation="sigmoid" if regions else "softmax", include_background=regions,
                               batch=self.configuration_manager.batch_dice)
        return deep_supervised(RegionAndPixelLoss(dice, regions=regions, ignore_label=self.label_manager.ignore_label),
                               nnunet_scale_weights(self))
