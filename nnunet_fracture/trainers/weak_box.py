"""Weak-box trainers: learn a voxel fracture map from boxes (or slice ranges) alone.

Datasets come from ``nnunet-fracture convert --weak box`` (or ``--weak slice``): ``labelsTr`` holds the box number
n inside box n and 0 outside every box, declared to nnU-Net as one region ("fracture" = all box numbers), so the
network has one sigmoid output. These trainers keep the box numbers through augmentation and deep supervision (every
box its own bag), train with :class:`~nnunet_fracture.losses.WeakBoxLoss` - by default the box priors
(:mod:`~nnunet_fracture.training.box_priors`: tightness, size, HU affinity), the first recipe's L1-L4 on request
(:mod:`~nnunet_fracture.training.box_mil_settings`) -, sample half of the patches in boxes and the rest away from
them (:mod:`~nnunet_fracture.training.box_sampling`) and validate with box-aware numbers
(:mod:`~nnunet_fracture.training.box_validation`). README "Weak-box losses" has the formulas and measurements.

Prediction is stock (``nnUNetv2_predict``; folds ensemble as usual); ``nnunet-fracture pseudo-masks`` turns the
probabilities into box-constrained masks. To combine with another plugin trainer's network, inherit from both:
``class nnUNetTrainerWeakBBoxAttention(nnUNetTrainerWeakBBox, nnUNetTrainerAttentionUNet): pass``.
"""
from __future__ import annotations

import torch

from nnunet_fracture.losses import WeakBoxLoss
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.training.box_mil_settings import BoxMILSettings
from nnunet_fracture.training.box_priors import BoxPriorSettings
from nnunet_fracture.training.box_sampling import BoxNumberBatches
from nnunet_fracture.training.box_validation import BoxAwareValidation, validation_note
from nnunet_fracture.training.error_channel import find_error_channel
from nnunet_fracture.training.loss_inputs import loss_called_with, weak_loss_inputs
from nnunet_fracture.training.loss_wrapping import nnunet_scale_weights
from nnunet_fracture.training.weak_dataset import check_weak_dataset


class nnUNetTrainerWeakBBox(BoxPriorSettings, BoxMILSettings, BoxNumberBatches, BoxAwareValidation,
                            nnUNetTrainerFracture):
    """Box-level weak supervision. The default recipe (the best on the quality bench): plane bags through each box's
    core with a smooth maximum and focal unary (tightness), each bag scoring the mean P of 2 x 2 x 2 cubes (solid
    bags), and size bounds. Single-voxel bags (``tightness_window=1``, the default until 2026-12-07) let the network
    answer in a lattice - every other voxel of a slice confident - on some runs and not on others. HU affinity
    (``lambda_affinity=1``) is available and off: it joins the fracture band to the equally dense endplate cortex
    above it. The first recipe: ``lambda_outside=1 lambda_mil=1 lambda_contrast=0.1 lambda_tightness=0
    lambda_size=0``."""

    settings = ("negative_margin", "validation_threshold")
    lambda_tightness = 1.0  # quality bench: plane bags + size bounds beat mean bags and + HU affinity (README)
    tightness_window = 2  # quality bench: no lattice; voxel bags trained alongside scored lower on every seed (README)
    lambda_size = 0.1
    negative_margin = 8
    validation_threshold = 0.5
    oversample_foreground_percent = 0.5  # half of every batch centred in a box
    setting_ranges = {"negative_margin": (0, None), "validation_threshold": (0.0, 1.0)}

    #: ``--weak`` modes of ``nnunet-fracture convert`` this trainer is meant for
    weak_modes = ("box",)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        note = check_weak_dataset(self.label_manager, dataset_json, type(self).__name__, self.weak_modes)
        if note:
            self.print_to_log_file(note)
        self.error_channel = find_error_channel(dataset_json)

    def _build_loss(self):
        return WeakBoxLoss(scale_weights=nnunet_scale_weights(self), **self.box_mil_loss_arguments(),
                           **self.box_prior_loss_arguments(self.configuration_manager.spacing,
                                                        self.plans_manager.transpose_forward))

    def _weak_loss(self):
        inner = getattr(self.loss, "seg_loss", self.loss)  # the classification head wraps the weak-box loss
        return inner if isinstance(inner, WeakBoxLoss) else None

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        loss = self._weak_loss()
        if loss is not None and self.lambda_size > 0:
            loss.size.t = self.size_barrier_at(self.current_epoch)

    def extra_loss_inputs(self, batch: dict) -> dict:
        weak = self._weak_loss() is not None  # a wrapping loss (the classification head's) passes them on
        hu = ((self.configuration_manager.normalization_schemes[0],
               self.plans_manager.foreground_intensity_properties_per_channel["0"])
              if weak and self.lambda_affinity > 0 else None)  # looked up only for the affinity term, as before
        return weak_loss_inputs(batch["data"], self.device,
                                self.error_channel if weak and self.lambda_consistency > 0 else None, hu)

    def train_step(self, batch: dict) -> dict:
        with loss_called_with(self, self.extra_loss_inputs(batch)):
            return super().train_step(batch)

    def on_train_start(self):
        super().on_train_start()
        note = self.consistency_note(self.error_channel, None if self._weak_loss() is not None
                                     else type(self.loss).__name__)
        if note:
            self.print_to_log_file(note)
        self.print_to_log_file(validation_note(type(self).__name__, self.validation_threshold))


class nnUNetTrainerWeakSlice(nnUNetTrainerWeakBBox):
    """Slice-level weak supervision: each box's range of whole axial slices is a bag, aggregated by its maximum
    (most of such a bag is not fracture, so a mean would be pushed up everywhere), with the outside and contrast
    terms. The slice-level tightness prior - every slice of a range's core a bag, nothing asked in-plane - is
    ``lambda_outside=0 lambda_mil=0 lambda_contrast=0 lambda_tightness=1 tightness_planes=slice``; on the quality
    bench neither recipe finds the fractures from slice ranges alone (README "Slice ranges"), so the default stays
    the first one. A size bound in boxes does not carry over to whole slices."""

    bag_aggregation = "max"
    lambda_outside = 1.0
    lambda_mil = 1.0
    lambda_contrast = 0.1
    lambda_tightness = 0.0
    lambda_size = 0.0
    weak_modes = ("slice",)
