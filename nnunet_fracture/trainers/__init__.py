"""The plugin's nnU-Net trainers (trainer modules only: nnU-Net imports this package through nnUNet_extTrainer)."""
from nnunet_fracture.trainers.adversarial import nnUNetTrainerAdversarial
from nnunet_fracture.trainers.attention_unet import nnUNetTrainerAttentionUNet
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.trainers.classification_head import nnUNetTrainerClsHead, nnUNetTrainerSliceLSTMClsHead
from nnunet_fracture.trainers.normal_vae import nnUNetTrainerNormalVAE
from nnunet_fracture.trainers.focal_tversky import nnUNetTrainerFocalTversky, nnUNetTrainerFocalTverskyPaper
from nnunet_fracture.trainers.polydice_mcd import nnUNetTrainerPolyDiceMCD
from nnunet_fracture.trainers.present_dice import nnUNetTrainerPresentDice
from nnunet_fracture.trainers.slice_lstm import nnUNetTrainerSliceLSTM
from nnunet_fracture.trainers.weak_box import nnUNetTrainerWeakBBox, nnUNetTrainerWeakSlice
from nnunet_fracture.trainers.weak_box_networks import nnUNetTrainerWeakBBoxAttention
from nnunet_fracture.trainers.weak_box_networks import nnUNetTrainerWeakBBoxClsHead
from nnunet_fracture.trainers.weak_box_networks import nnUNetTrainerWeakBBoxSliceLSTM

__all__ = ["nnUNetTrainerAttentionUNet", "nnUNetTrainerClsHead", "nnUNetTrainerFracture", "nnUNetTrainerWeakBBox",
           "nnUNetTrainerWeakBBoxAttention", "nnUNetTrainerWeakBBoxClsHead", "nnUNetTrainerWeakSlice",
           "nnUNetTrainerSliceLSTM", "nnUNetTrainerWeakBBoxSliceLSTM", "nnUNetTrainerSliceLSTMClsHead",
           "nnUNetTrainerFocalTversky", "nnUNetTrainerFocalTverskyPaper", "nnUNetTrainerPolyDiceMCD",
           "nnUNetTrainerPresentDice", "nnUNetTrainerNormalVAE", "nnUNetTrainerAdversarial"]
