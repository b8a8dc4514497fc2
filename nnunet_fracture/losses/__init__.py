"""Weak-box losses (one concept per file); data contract in :mod:`nnunet_fracture.losses.bag_aggregation`."""
from nnunet_fracture.losses.adversarial import AdversarialSegmentationLoss, GANLoss
from nnunet_fracture.losses.bag_aggregation import AGGREGATIONS, BoxBags, aggregate_bags, find_bags
from nnunet_fracture.losses.box_affinity import BoxAffinityLoss
from nnunet_fracture.losses.box_contrast import BoxContrastLoss
from nnunet_fracture.losses.box_mil import BoxMILLoss
from nnunet_fracture.losses.box_projection import BoxProjectionLoss
from nnunet_fracture.losses.box_size import BoxSizeLoss, extended_log_barrier
from nnunet_fracture.losses.box_smoothness import BoxSmoothnessLoss
from nnunet_fracture.losses.box_tightness import BoxTightnessLoss
from nnunet_fracture.losses.compound import RegionAndPixelLoss
from nnunet_fracture.losses.focal import FocalLoss
from nnunet_fracture.losses.focal_tversky import FocalTverskyLoss
from nnunet_fracture.losses.outside_background import OutsideBackgroundLoss
from nnunet_fracture.losses.polydice import PolyDice1Loss
from nnunet_fracture.losses.present_dice import PresentDiceLoss
from nnunet_fracture.losses.vae_consistency import ConsistencyLoss
from nnunet_fracture.losses.vae_loss import VAELoss
from nnunet_fracture.losses.weak_box import WeakBoxLoss, deep_supervision_weights

__all__ = [
    "AGGREGATIONS",
    "AdversarialSegmentationLoss",
    "BoxAffinityLoss",
    "BoxBags",
    "BoxContrastLoss",
    "BoxMILLoss",
    "BoxProjectionLoss",
    "BoxSizeLoss",
    "BoxSmoothnessLoss",
    "BoxTightnessLoss",
    "ConsistencyLoss",
    "FocalLoss",
    "FocalTverskyLoss",
    "GANLoss",
    "OutsideBackgroundLoss",
    "PolyDice1Loss",
    "PresentDiceLoss",
    "RegionAndPixelLoss",
    "VAELoss",
    "WeakBoxLoss",
    "aggregate_bags",
    "deep_supervision_weights",
    "extended_log_barrier",
    "find_bags",
]
