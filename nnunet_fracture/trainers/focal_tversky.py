"""``nnUNetTrainerFocalTversky``: Focal Tversky + focal loss in place of nnU-Net's Dice + CE.

The two terms are combined like nnU-Net's Dice and CE (:class:`~nnunet_fracture.losses.RegionAndPixelLoss`:
same ignore-label and region handling) and deep-supervised with nnU-Net's scale weights.

Both parameterizations of Focal Tversky are reachable (see :mod:`nnunet_fracture.losses.focal_tversky`):

- ``ft_convention="plan"`` (default, the research plan / MONAI): ``ft_alpha`` weighs false positives, ``ft_beta``
  false negatives, exponent ``ft_gamma``: ``ft_alpha=0.3 ft_beta=0.7 ft_gamma=0.75``.
- ``ft_convention="paper"`` (Abraham & Khan 2019): ``ft_alpha`` weighs false negatives, ``ft_beta`` false
  positives, exponent ``1/ft_gamma``: ``ft_alpha=0.7 ft_beta=0.3 ft_gamma=1.3333`` - the same loss as the plan's
  defaults. ``nnUNetTrainerFocalTverskyPaper`` has these defaults.
"""
from __future__ import annotations

import torch

from nnunet_fracture.losses import FocalLoss, FocalTverskyLoss, RegionAndPixelLoss
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.training.loss_wrapping import deep_supervised, nnunet_scale_weights


class nnUNetTrainerFocalTversky(nnUNetTrainerFracture):
    """``weight_focal_tversky * FocalTversky + weight_focal * Focal`` (research plan: 0.3 / 0.7 / 0.75)."""

    settings = ("ft_alpha", "ft_beta", "ft_gamma", "ft_convention", "ft_smooth", "focal_gamma", "focal_alpha",
                "weight_focal_tversky", "weight_focal")
    ft_alpha = 0.3
    ft_beta = 0.7
    ft_gamma = 0.75
    ft_convention = "plan"
    ft_smooth = 1e-5
    focal_gamma = 2.0
    focal_alpha = None  # None: no class weighting; a number in [0, 1] weighs foreground (Lin et al.'s alpha)
    weight_focal_tversky = 1.0
    weight_focal = 1.0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._build_focal_tversky_loss()  # fail on bad settings before training starts

    def _build_focal_tversky_loss(self) -> RegionAndPixelLoss:
        regions = self.label_manager.has_regions
        activation = "sigmoid" if regions else "softmax"
        focal_tversky = FocalTverskyLoss(alpha=self.ft_alpha, beta=self.ft_beta, gamma=self.ft_gamma,
                                         convention=self.ft_convention, activation=activation,
                                         include_background=regions, batch=self.configuration_manager.batch_dice,
                                         smooth=self.ft_smooth)
        focal = FocalLoss(gamma=self.focal_gamma, alpha=self.focal_alpha, activation=activation)
        return RegionAndPixelLoss(focal_tversky, focal, weight_region=self.weight_focal_tversky,
                                  weight_pixel=self.weight_focal, regions=regions,
                                  ignore_label=self.label_manager.ignore_label)

    def _build_loss(self):
        return deep_supervised(self._build_focal_tversky_loss(), nnunet_scale_weights(self))


class nnUNetTrainerFocalTverskyPaper(nnUNetTrainerFocalTversky):
    """Focal Tversky in Abraham & Khan's parameterization: alpha 0.7 on FN, beta 0.3 on FP, exponent 1/gamma, 4/3."""

    ft_alpha = 0.7
    ft_beta = 0.3
    ft_gamma = 4 / 3
    ft_convention = "paper"
