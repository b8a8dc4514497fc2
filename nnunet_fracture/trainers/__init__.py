"""The plugin's nnU-Net trainers (trainer modules only: nnU-Net imports this package through nnUNet_extTrainer)."""
from nnunet_fracture.trainers.base import nnUNetTrainerFracture

__all__ = ["nnUNetTrainerFracture"]
