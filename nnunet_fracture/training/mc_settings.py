"""The MC-Dropout side of a PolyDice-MCD trainer: its settings (:class:`MCDropoutSettings`, a mixin), their checks,
and each image's ``eps1`` from the per-case table the rounds fill (:mod:`nnunet_fracture.training.mc_rounds`).

- ``weight_polydice``, ``weight_ce``: the weights of PolyDice-1 and cross entropy;
- ``epsilon_min``, ``epsilon_max``, ``epsilon_direction``: the range of ``eps1`` and whether harder cases get the
  larger end (:mod:`nnunet_fracture.training.difficulty`);
- ``dropout_p_train``: the dropout rate while training; ``mc_dropout_p``: the rate of the MC passes;
- ``mc_passes`` (N), ``mc_every`` (M, 0 switches the rounds off), ``mc_cases_per_round`` (0: as many as
  ``mc_max_overhead`` allows), ``mc_patches_per_case``, ``mc_foreground_only``, ``mc_aggregate``,
  ``mc_top_percent``, ``mc_seed``, ``mc_batch_size`` (0: all N passes of a patch in one forward batch):
  how a round assesses the cases (:mod:`nnunet_fracture.training.mc_assessment`).
"""
from __future__ import annotations

from typing import Iterable

import torch

from nnunet_fracture.training import difficulty, mc_assessment
from nnunet_fracture.training import mc_dropout as mcd


class MCDropoutSettings:
    """Settings of PolyDice-1 + CE with MC-Dropout per-image ``eps1`` (research plan: p = 0.5, N = 10, M = 10), mixed
    into a trainer (collected along the MRO, :mod:`nnunet_fracture.training.settings`). The trainer holds
    ``epsilon`` (case -> ``eps1``) and ``device``."""

    settings = ("weight_polydice", "weight_ce", "epsilon_min", "epsilon_max", "epsilon_direction",
                "dropout_p_train", "mc_dropout_p", "mc_passes", "mc_every", "mc_cases_per_round",
                "mc_max_overhead", "mc_patches_per_case", "mc_foreground_only", "mc_aggregate", "mc_top_percent",
                "mc_seed", "mc_batch_size")
    weight_polydice = 1.0
    weight_ce = 1.0
    epsilon_min = 0.0
    epsilon_max = 1.0
    epsilon_direction = "harder_larger"
    dropout_p_train = 0.1
    mc_dropout_p = 0.5
    mc_passes = 10
    mc_every = 10
    mc_cases_per_round = 0
    mc_max_overhead = 0.1
    mc_patches_per_case = 1
    mc_foreground_only = False
    mc_aggregate = "mean"
    mc_top_percent = 1.0
    mc_seed = 0
    mc_batch_size = 0
    setting_ranges = {"mc_passes": (2, None), "mc_every": (0, None), "mc_cases_per_round": (0, None),
                      "mc_patches_per_case": (1, None), "mc_batch_size": (0, None), "mc_max_overhead": (1e-12, None),
                      "weight_polydice": (0.0, None), "weight_ce": (0.0, None)}
    setting_choices = {"mc_aggregate": mc_assessment.AGGREGATES, "epsilon_direction": difficulty.DIRECTIONS}

    def check_mc_settings(self, cascaded: bool) -> None:
        """Raise ``ValueError`` for a dropout rate outside [0, 1) or a bad ``eps1`` range, ``RuntimeError`` for
        MC rounds on a cascade (their patches lack the previous stage's segmentation)."""
        mcd.check_rate("dropout_p_train", self.dropout_p_train)
        mcd.check_rate("mc_dropout_p", self.mc_dropout_p)
        difficulty.epsilon_by_rank({}, self.epsilon_min, self.epsilon_max, self.epsilon_direction)  # validates
        if self.mc_every and cascaded:
            raise RuntimeError(f"{type(self).__name__}: MC-Dropout patches do not include a cascade's previous-stage "
                               f"segmentation; train a non-cascaded configuration or set mc_every=0")

    @property
    def neutral_epsilon(self) -> float:
        """``eps1`` of a case no round has assessed: the middle of the range."""
        return difficulty.neutral_epsilon(self.epsilon_min, self.epsilon_max)

    def epsilon_for(self, keys: Iterable) -> torch.Tensor:
        """``eps1`` of each image of a batch, from its case key (duplicates allowed), as a ``(B,)`` tensor."""
        neutral = self.neutral_epsilon
        return torch.tensor([self.epsilon.get(str(k), neutral) for k in keys], dtype=torch.float32,
                            device=self.device)
