"""Weak-box trainers: learn a voxel fracture map from boxes (or slice ranges) alone.

Datasets come from ``nnunet-fracture convert --weak box`` (or ``--weak slice``): ``labelsTr`` holds the box
number n inside box n and 0 outside every box, declared to nnU-Net as one region ("fracture" = all box
numbers), so the network has one sigmoid output. These trainers

- keep the box numbers through augmentation and deep-supervision downsampling (nnU-Net would merge them into
  the region), so every box is its own bag;
- train with :class:`~nnunet_fracture.losses.WeakBoxLoss`. By default (the box priors, README "Weak boxes"):
  every plane through a box's core holds fracture and every voxel outside the boxes is background (tightness),
  the fracture fills 2-30 % of its box (size), and neighbours of similar HU agree (affinity). The first recipe's
  terms stay available: outside voxels are background (L1), each box must contain fracture (L2,
  multiple-instance learning, one bag per box and patch), the best inside voxel must beat the best outside voxel
  by a margin (L3); and, with ``lambda_consistency > 0`` on a dataset written by
  ``nnunet-fracture vae-error``, P agrees with the VAE error map E (L4 = mean |P - E|): E is read from the batch's
  input channel named ``noNorm`` (:func:`~nnunet_fracture.training.error_channel.find_error_channel`), clipped
  to [0, 1]; without such a channel L4 is skipped (one log line). E is an input channel like the CT, so nnU-Net's
  spatial augmentations keep it aligned with the CT and the labels, and its intensity augmentations (noise,
  blur, brightness, contrast, gamma, low resolution; each applied to a share of the patches) perturb it too:
  as an input that is harmless augmentation, as the L4 target it is noise that the L1 distance tolerates;
- sample half of the patches centred in boxes and the rest as negatives kept ``negative_margin`` voxels away
  from every box (:mod:`nnunet_fracture.training.box_sampling`);
- validate with box-aware numbers instead of a pseudo Dice against boxes
  (:mod:`nnunet_fracture.training.box_validation`).

Prediction is stock: ``nnUNetv2_predict`` writes the fracture probability (one channel) and several folds
ensemble as usual. Turn probabilities into box-constrained masks with ``nnunet-fracture pseudo-masks``.

To combine with a network from another plugin trainer, inherit from both, e.g.
``class nnUNetTrainerWeakBBoxAttention(nnUNetTrainerWeakBBox, nnUNetTrainerAttentionUNet): pass``; the weak-box
trainer overrides only the loss, the transforms, the data loader and validation.
"""
from __future__ import annotations

from functools import partial
from typing import List

import torch

from nnunet_fracture.losses import AGGREGATIONS, WeakBoxLoss
from nnunet_fracture.losses.box_contrast import CONTRAST_MODES
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.training.box_priors import BoxPriorSettings
from nnunet_fracture.training.box_sampling import BoxAwareDataLoader, use_data_loader
from nnunet_fracture.training.box_validation import box_validation_step, finish_validation_epoch
from nnunet_fracture.training.error_channel import find_error_channel
from nnunet_fracture.training.loss_inputs import loss_called_with, weak_loss_inputs
from nnunet_fracture.training.loss_wrapping import nnunet_scale_weights
from nnunet_fracture.training.weak_dataset import check_weak_dataset


class nnUNetTrainerWeakBBox(BoxPriorSettings, nnUNetTrainerFracture):
    """Box-level weak supervision. The default recipe (the best on the quality bench): plane bags through each box's
    core with a smooth maximum and focal unary (tightness), size bounds and HU affinity inside the boxes; the first
    recipe's terms - each box one bag whose mean P is pushed to 1 (L2), outside voxels to 0 (L1), a contrast
    margin (L3) - stay available (``lambda_outside=1 lambda_mil=1 lambda_contrast=0.1 lambda_tightness=0
    lambda_size=0 lambda_affinity=0``)."""

    settings = ("lambda_outside", "lambda_mil", "lambda_contrast", "lambda_consistency", "bag_aggregation",
                "smooth_max_alpha", "contrast_margin", "contrast_mode", "negative_margin",
                "validation_threshold")
    lambda_outside = 0.0  # the box priors' tightness term has its own outside term
    lambda_mil = 0.0
    lambda_contrast = 0.0
    lambda_tightness = 1.0  # quality bench: in-box Dice 0.352 +- 0.076 against 0.248 for mean bags (README)
    lambda_size = 0.1
    lambda_affinity = 1.0
    lambda_consistency = 0.0
    bag_aggregation = "mean"
    smooth_max_alpha = 4.0
    contrast_margin = 0.3
    contrast_mode = "max"
    negative_margin = 8
    validation_threshold = 0.5
    oversample_foreground_percent = 0.5  # half of every batch centred in a box
    setting_choices = {"bag_aggregation": AGGREGATIONS, "contrast_mode": CONTRAST_MODES}
    setting_ranges = {"lambda_outside": (0.0, None), "lambda_mil": (0.0, None), "lambda_contrast": (0.0, None),
                      "lambda_consistency": (0.0, None), "smooth_max_alpha": (1e-6, None), "negative_margin": (0, None),
                      "validation_threshold": (0.0, 1.0)}

    #: ``--weak`` modes of ``nnunet-fracture convert`` this trainer is meant for
    weak_modes = ("box",)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        note = check_weak_dataset(self.label_manager, dataset_json, type(self).__name__, self.weak_modes)
        if note:
            self.print_to_log_file(note)
        self.error_channel = find_error_channel(dataset_json)

    # --- loss ------------------------------------------------------------------------------------------------
    def _build_loss(self):
        return WeakBoxLoss(lambda_outside=self.lambda_outside, lambda_mil=self.lambda_mil,
                           lambda_contrast=self.lambda_contrast, lambda_consistency=self.lambda_consistency,
                           aggregation=self.bag_aggregation, alpha=self.smooth_max_alpha,
                           margin=self.contrast_margin, contrast_mode=self.contrast_mode,
                           scale_weights=nnunet_scale_weights(self),
                           **self.box_prior_loss_arguments(self.configuration_manager.spacing))

    def _weak_loss(self):
        inner = getattr(self.loss, "seg_loss", self.loss)  # the classification head wraps the weak-box loss
        return inner if isinstance(inner, WeakBoxLoss) else None

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        loss = self._weak_loss()
        if loss is not None and self.lambda_size > 0:
            loss.size.t = self.size_barrier_at(self.current_epoch)

    # --- L4's error map and the affinity term's HU, passed to the loss ----------------------------------------
    def _uses_error_map(self) -> bool:
        # a wrapping loss (the classification head's) passes error_map on to its inner ``seg_loss``
        return self.lambda_consistency > 0 and self.error_channel is not None and self._weak_loss() is not None

    def _loss_inputs(self, batch: dict) -> dict:
        uses_hu = self.lambda_affinity > 0 and self._weak_loss() is not None
        return weak_loss_inputs(batch["data"], self.device, self.error_channel if self._uses_error_map() else None,
                                (self.configuration_manager.normalization_schemes[0],
                                 self.plans_manager.foreground_intensity_properties_per_channel["0"]) if uses_hu
                                else None)

    def train_step(self, batch: dict) -> dict:
        with loss_called_with(self, self._loss_inputs(batch)):
            return super().train_step(batch)

    # --- keep box numbers (nnU-Net would merge them into the region) -------------------------------------------
    @staticmethod
    def get_training_transforms(*args, **kwargs):
        kwargs["regions"] = None
        return nnUNetTrainerFracture.get_training_transforms(*args, **kwargs)

    @staticmethod
    def get_validation_transforms(*args, **kwargs):
        kwargs["regions"] = None
        return nnUNetTrainerFracture.get_validation_transforms(*args, **kwargs)

    # --- sampling -------------------------------------------------------------------------------------------
    def get_dataloaders(self):
        with use_data_loader(partial(BoxAwareDataLoader, negative_margin=self.negative_margin)):
            return super().get_dataloaders()

    # --- box-aware online validation --------------------------------------------------------------------------
    def on_train_start(self):
        super().on_train_start()
        if self._uses_error_map():
            self.print_to_log_file(f"L4 (lambda_consistency={self.lambda_consistency}) reads the VAE error map E from "
                                   f"input channel {self.error_channel}")
        elif self.lambda_consistency > 0:
            why = (f"the loss {type(self.loss).__name__} takes no error map" if self.error_channel is not None else
                   "the dataset has no VAE error channel (a channel named noNorm, written by `nnunet-fracture "
                   "vae-error`)")
            self.print_to_log_file(f"L4 skipped: lambda_consistency={self.lambda_consistency} but {why}")
        self.print_to_log_file(
            f"{type(self).__name__}: online validation reports mass inside boxes, box hit rate and outside "
            f"false-positive rate at P >= {self.validation_threshold}; the 'Pseudo dice' lines show the box score "
            f"(harmonic mean of mass inside and hit rate), which also selects checkpoint_best")

    def validation_step(self, batch: dict) -> dict:
        return box_validation_step(self, batch, self._loss_inputs(batch))

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        finish_validation_epoch(self, val_outputs)


class nnUNetTrainerWeakSlice(nnUNetTrainerWeakBBox):
    """Slice-level weak supervision: each box's range of whole axial slices is a bag, aggregated by its maximum
    (most of such a bag is not fracture, so a mean would be pushed up everywhere), with the outside and contrast
    terms. The box priors stay off until measured on slice ranges (a size bound in boxes does not carry over to
    whole slices)."""

    bag_aggregation = "max"
    lambda_outside = 1.0
    lambda_mil = 1.0
    lambda_contrast = 0.1
    lambda_tightness = 0.0
    lambda_size = 0.0
    lambda_affinity = 0.0
    weak_modes = ("slice",)
