"""``nnUNetTrainerAdversarial``: nnU-Net's Dice + CE plus a pix2pix-style adversarial term.

    nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainerAdversarial

A PatchGAN discriminator D (:func:`~nnunet_fracture.training.discriminator.build_discriminator`) sees the CT patch
stacked with a segmentation - the one-hot truth (real) or the network's softmax (fake) - and the network learns
to fool it, weighted ``lambda_adversarial``, on top of nnU-Net's own deep-supervised loss
(:mod:`nnunet_fracture.losses.adversarial`), from epoch ``adversarial_start`` x ``num_epochs`` on: before it the
segmentation learns alone and D is not trained (:func:`~nnunet_fracture.losses.adversarial.delayed_weight`). Each
of nnU-Net's training steps is then followed by one update of D with Adam at ``discriminator_lr``; D's weights and
optimiser travel in nnU-Net's checkpoints, so ``--c`` continues both. Validation and prediction are nnU-Net's: D
is not part of the network.

Settings (``NNUNET_FRACTURE_SETTINGS``): ``lambda_adversarial`` (0.01, pix2pix's 1 : 100 against its L1 term; 0
trains the stock loss), ``adversarial_start`` (0.5: the share of the epochs trained without the term),
``gan_mode`` (``vanilla`` as pix2pix, or ``lsgan``), ``discriminator_lr`` (2e-4), ``discriminator_features`` (32:
channels of D's first stage, doubled per stage) and ``discriminator_stages`` (3). Label training only (not
regions); one process (D is not synchronised across DDP ranks).
"""
from __future__ import annotations

import numpy as np

from nnunet_fracture.losses.adversarial import GAN_MODES, AdversarialSegmentationLoss, delayed_weight
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.training.discriminator import DiscriminatorUpdates, build_discriminator
from nnunet_fracture.training.loss_inputs import loss_called_with


class nnUNetTrainerAdversarial(nnUNetTrainerFracture):
    """nnU-Net's loss + ``lambda_adversarial`` x a conditional PatchGAN's (see the module docstring)."""

    settings = ("lambda_adversarial", "adversarial_start", "gan_mode", "discriminator_lr", "discriminator_features",
                "discriminator_stages")
    lambda_adversarial = 0.01
    adversarial_start = 0.5
    gan_mode = "vanilla"
    discriminator_lr = 2e-4
    discriminator_features = 32
    discriminator_stages = 3
    setting_ranges = {"lambda_adversarial": (0.0, None), "adversarial_start": (0.0, 1.0),
                      "discriminator_lr": (1e-12, None), "discriminator_features": (1, None),
                      "discriminator_stages": (1, None)}
    setting_choices = {"gan_mode": GAN_MODES}

    def _build_loss(self):
        if self.label_manager.has_regions:
            raise RuntimeError(f"{type(self).__name__} judges softmax label maps; this dataset trains regions. Fix: "
                               "train nnUNetTrainer (or nnUNetTrainerFracture) on it.")
        if self.is_ddp:
            raise RuntimeError(f"{type(self).__name__} updates its discriminator in one process. Fix: train with "
                               "one GPU (leave out -num_gpus).")
        discriminator = build_discriminator(self.num_input_channels, self.label_manager.num_segmentation_heads,
                                            len(self.configuration_manager.patch_size), self.discriminator_features,
                                            self.discriminator_stages).to(self.device)
        loss = AdversarialSegmentationLoss(super()._build_loss(), discriminator, self._adversarial_weight(),
                                           self.label_manager.ignore_label, self.gan_mode)
        self.discriminator_updates = DiscriminatorUpdates(loss, self.discriminator_lr, self.device)
        return loss

    def _adversarial_weight(self) -> float:
        return delayed_weight(self.lambda_adversarial, self.current_epoch, self.num_epochs, self.adversarial_start)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        weight = self._adversarial_weight()
        if weight != self.loss.weight or self.current_epoch == 0:
            self.print_to_log_file(f"adversarial weight from this epoch on: {weight:g}")
        self.loss.weight = weight

    def train_step(self, batch: dict) -> dict:
        with loss_called_with(self, {"image": batch["data"]}):
            result = super().train_step(batch)
        d_loss = self.discriminator_updates.step()
        return {**result, "discriminator_loss": np.nan if d_loss is None else d_loss}

    def on_train_epoch_end(self, train_outputs: list[dict]):
        d_losses = [o["discriminator_loss"] for o in train_outputs if np.isfinite(o["discriminator_loss"])]
        if d_losses:
            self.print_to_log_file(f"discriminator loss {np.mean(d_losses):.4f}")
        super().on_train_epoch_end(train_outputs)

    def get_extra_state(self) -> dict:
        return {**super().get_extra_state(), "discriminator": self.discriminator_updates.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        super().set_extra_state(state)
        if "discriminator" in state:
            self.discriminator_updates.load_state_dict(state["discriminator"])
