"""The plugin's nnU-Net trainers (trainer modules only: nnU-Net imports this package through nnUNet_extTrainer)."""
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.trainers.weak_box import nnUNetTrainerWeakBBox, nnUNetTrainerWeakSlice

__all__ = ["nnUNetTrainerFracture", "nnUNetTrainerWeakBBox", "nnUNetTrainerWeakSlice"]
