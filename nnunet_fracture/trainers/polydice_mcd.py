"""``nnUNetTrainerPolyDiceMCD``: PolyDice-1 + cross entropy with a per-image ``eps1`` from MC-Dropout difficulty.

- Loss: nnU-Net's Dice + CE combination with Dice replaced by PolyDice-1
  (:class:`~nnunet_fracture.losses.PolyDice1Loss` in :class:`~nnunet_fracture.losses.RegionAndPixelLoss`, same
  ignore-label and region handling), deep-supervised with nnU-Net's scale weights; every image of a batch gets
  its own ``eps1``, looked up by the batch's case keys, at every scale.
- Dropout: element-wise dropout after every convolution, placed through the plans' ``dropout_op``
  (``build_network_architecture``). Training runs it at ``dropout_p_train`` (default 0.1); the MC passes raise
  it to ``mc_dropout_p`` (default 0.5, the research plan's p) for their duration only. Why not train at 0.5 as
  the plan does: nnU-Net's U-Net has no dropout, and p = 0.5 after every one of its convolutions costs
  segmentation quality; the difficulty is used only by rank, so it needs a consistent ordering of cases, not a
  calibrated posterior, and the instance norm that follows each dropout renormalises the activations' scale.
  ``dropout_p_train=0.5`` reproduces the plan exactly.
- Every ``mc_every`` epochs (M) a round of ``mc_passes`` (N) stochastic passes over fixed patches of the training
  cases (budget: ``mc_cases_per_round`` - 0 sizes it from ``mc_max_overhead`` -, ``mc_patches_per_case``,
  ``mc_foreground_only``) gives each assessed case a difficulty (``mc_aggregate``), mapped by rank to ``eps1`` in
  ``[epsilon_min, epsilon_max]`` (``epsilon_direction``). See :mod:`nnunet_fracture.training.mc_dropout`.
- Rank 0 computes a round and broadcasts the result (DDP); :mod:`nnunet_fracture.training.mc_rounds`. The difficulty
  table and ``eps1`` travel in the checkpoint (``--c`` restores them); ``difficulty.csv`` (epoch x case),
  ``difficulty.png`` and ``epsilon.csv`` are written to the fold's output folder after every round.
"""
from __future__ import annotations

import time

import torch

from nnunet_fracture.losses import PolyDice1Loss, RegionAndPixelLoss
from nnunet_fracture.trainers.base import nnUNetTrainerFracture
from nnunet_fracture.training import difficulty
from nnunet_fracture.training import mc_dropout as mcd
from nnunet_fracture.training.loss_wrapping import PerImageEpsilonLoss, nnunet_scale_weights
from nnunet_fracture.training.mc_rounds import MCDropoutRounds
from nnunet_fracture.training.mc_settings import MCDropoutSettings


class nnUNetTrainerPolyDiceMCD(MCDropoutSettings, MCDropoutRounds, nnUNetTrainerFracture):
    """PolyDice-1 + CE with MC-Dropout-driven per-image ``eps1`` (settings:
    :class:`~nnunet_fracture.training.mc_settings.MCDropoutSettings`)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.check_mc_settings(self.is_cascaded)
        self.difficulty = difficulty.DifficultyTable()
        self.epsilon: dict[str, float] = {}
        self.mc_round_seconds: list[float] = []
        self.mc_candidates: list[str] | None = None
        self.mc_clock = time.perf_counter()

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return super().build_network_architecture(  # dropout through the plans' dropout_op
            plans_manager, mcd.with_dropout(configuration_manager, cls.dropout_p_train), num_input_channels,
            num_output_channels, enable_deep_supervision)

    def initialize(self):
        super().initialize()
        if mcd.set_dropout_rate(self.network, self.dropout_p_train) == 0:
            raise RuntimeError(f"{type(self).__name__}: the network has no MCDropout module; is "
                               f"build_network_architecture overridden by another base class before this one?")

    def _build_loss(self):
        regions = self.label_manager.has_regions
        polydice = PolyDice1Loss(activation="sigmoid" if regions else "softmax", include_background=regions,
                                 epsilon=self.neutral_epsilon)
        loss = RegionAndPixelLoss(polydice, weight_region=self.weight_polydice, weight_pixel=self.weight_ce,
                                  regions=regions, ignore_label=self.label_manager.ignore_label)
        return PerImageEpsilonLoss(loss, nnunet_scale_weights(self))

    def train_step(self, batch: dict) -> dict:
        with self.loss.using(self.epsilon_for(batch['keys'])):  # eps1 per image, from the batch's case keys
            return super().train_step(batch)
