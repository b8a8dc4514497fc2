"""``nnUNetTrainerNormalVAE``: phase 1 of the VAE anomaly prior - a VAE trained on normal tissue only.

    nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainerNormalVAE [-p nnUNetPlansTiny] [--c]

on the CT of a weak-box (or mask) dataset, planned and preprocessed by the stock command. Against nnU-Net's trainer:
the network is a :class:`~nnunet_fracture.networks.vae.ConvVAE` built from the plans with a dense latent code of
``vae_latent_dim`` numbers (a class attribute: ``nnUNetv2_predict`` and ``vae-error`` rebuild the network without
the environment); the loss is reconstruction + ``vae_beta`` x KL (:class:`~nnunet_fracture.losses.vae_loss.VAELoss`,
``vae_beta`` warmed up over ``vae_beta_warmup_epochs``) in nnU-Net's ``loss(output, target)`` shape, so nnU-Net's
own ``train_step`` runs; AdamW at 1e-3 with the polynomial decay, no deep supervision; patches come only from
tissue ``vae_box_margin`` voxels away from every box, mostly bone (:mod:`~nnunet_fracture.training.normal_sampling`);
validation is the loss on normal patches online and the error map inside vs outside the boxes at the end
(:mod:`~nnunet_fracture.training.vae_validation`). ``nnunet-fracture vae-error`` turns a trained model's error map
into an input channel.
"""
from __future__ import annotations

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_fracture.losses.vae_loss import VAELoss, VAEStepLoss, warmed_up_beta
from nnunet_fracture.networks.vae import arguments_from_plans
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.training.error_channel import find_error_channel
from nnunet_fracture.training.loss_inputs import loss_called_with
from nnunet_fracture.training.normal_sampling import NormalPatchBatches, check_normal_batch
from nnunet_fracture.training.vae_validation import VAEValidation

VAE_CLASS = "nnunet_fracture.networks.vae.ConvVAE"


class nnUNetTrainerNormalVAE(NormalPatchBatches, VAEValidation, nnUNetTrainerFracture):
    """Train a VAE on normal tissue (see the module docstring)."""

    settings = ("vae_beta", "vae_beta_warmup_epochs", "vae_reconstruction", "vae_box_margin", "vae_bone_fraction",
                "vae_bone_quantile")
    vae_beta = 1.0
    vae_beta_warmup_epochs = 10
    vae_reconstruction = "mse"
    vae_box_margin = 8
    vae_bone_fraction = 0.75
    vae_bone_quantile = 0.9
    initial_lr = 1e-3
    enable_deep_supervision = False
    oversample_foreground_percent = 0.0

    #: size of the dense latent code, or (``vae_latent_channels``) channels of a spatial one on the bottleneck grid;
    #: change them by subclassing (the predictor rebuilds the network from the class, without the environment)
    vae_latent_dim = 128
    vae_latent_channels = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        channel = find_error_channel(dataset_json)
        if channel is not None:
            raise RuntimeError(f"{type(self).__name__} learns normal CT, but this dataset already holds a VAE error "
                               f"channel ({channel}). Fix: train the VAE on the dataset that `nnunet-fracture "
                               f"vae-error` read (without the error channel).")

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> torch.nn.Module:
        kwargs = arguments_from_plans(configuration_manager.network_arch_init_kwargs, configuration_manager.patch_size,
                                      cls.vae_latent_dim, cls.vae_latent_channels)
        return get_network_from_plans(VAE_CLASS, kwargs, configuration_manager.network_arch_init_kwargs_req_import,
                                      num_input_channels, num_output_channels, allow_init=True, deep_supervision=False)

    def _build_loss(self):
        return VAEStepLoss(VAELoss(beta=warmed_up_beta(self.vae_beta, 0, self.vae_beta_warmup_epochs),
                                   reconstruction=self.vae_reconstruction))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.loss.beta = warmed_up_beta(self.vae_beta, self.current_epoch, self.vae_beta_warmup_epochs)
        self.print_to_log_file(f"VAE beta (KL weight) this epoch: {self.loss.beta:.4g}")

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's own step; the loss (:class:`~nnunet_fracture.losses.vae_loss.VAEStepLoss`) gets the input."""
        check_normal_batch(batch)
        with loss_called_with(self, {"data": batch["data"].to(self.device, non_blocking=True)}):
            return super().train_step(batch)
