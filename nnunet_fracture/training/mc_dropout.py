"""MC-Dropout for ``nnUNetTrainerPolyDiceMCD``: where the dropout sits and how the MC passes switch it on.

The method as a whole (the passes, the difficulty and ``eps1``) is described here; its parts live in
:mod:`nnunet_fracture.training.mc_assessment` (patches, passes, difficulty, budget) and
:mod:`nnunet_fracture.training.difficulty` (``eps1`` by rank, the difficulty table). Everything works on plain
networks, arrays and dictionaries.

Method (research plan: every ``M`` epochs, ``N`` stochastic passes with dropout ``p``; defaults 10, 10, 0.5):

1. **Dropout in the network** - :func:`with_dropout` returns a copy of nnU-Net's configuration whose
   ``dropout_op`` is :class:`MCDropout` (element-wise dropout after every convolution of the plans' U-Net).
   Training runs it at its own rate; :func:`mc_dropout_mode` switches the whole network to eval mode, turns only
   the :class:`MCDropout` modules back on and sets their rate to the MC rate for the passes. Other dropout
   modules (e.g. a classification head's) and normalisation layers stay in eval mode.
2. **What the passes run on** - a full sliding window over every case ``N`` times is far too slow at real scale.
   Each case instead gets a fixed set of ``patches_per_case`` patches of the training patch size, drawn once
   from a seed derived from ``(seed, case)`` (:func:`draw_patch_boxes`): centred on foreground voxels (nnU-Net's
   ``class_locations``) where the case has foreground, uniformly placed otherwise. The same patches are used
   in every round, so the trajectory of a case's difficulty reflects the network, not the sampling. Patches
   come from the preprocessed data, without augmentation.
3. **Difficulty** - per voxel, the variance over the ``N`` passes of the foreground probability (mean over
   foreground channels; population variance), aggregated per case (:func:`aggregate_difficulty`): ``"mean"``
   over all patch voxels, ``"foreground"`` over voxels whose mean foreground probability is >= 0.5 (falls back to
   ``"mean"`` when the model predicts no foreground there), or ``"top_percent"``: the mean of the highest
   ``top_percent`` % of voxel variances.
4. **eps1 by rank** - :func:`epsilon_by_rank` maps the assessed cases' difficulties linearly by rank (ties share
   their mean rank) onto ``[eps_min, eps_max]``; ``direction="harder_larger"`` gives the hardest case
   ``eps_max``. Cases without a difficulty (before the first round, or never assessed) get the midpoint.
5. **Budget** - a round assesses ``cases_per_round`` cases (cycling through a fixed seeded order of the eligible
   cases, so every case is visited), ``patches_per_case`` patches each, optionally only cases with foreground.
   :func:`auto_cases_per_round` sizes it from an overhead target: a training sample (forward, backward,
   augmentation) costs about ``TRAIN_COST_IN_FORWARDS`` = 2 forward passes (measured 2.5 on CPU with tiny plans,
   ``benchmarks/mcd_overhead.py``; 2 leaves a margin), so ``N * patches * cases`` forward passes per ``M`` epochs
   of ``iterations * batch_size`` training samples cost about ``N * patches * cases / (2 * M * iterations *
   batch_size)`` of the training time. The trainer logs the measured share after every round.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

# the dotted path written into a model's plans.json: MCDropout must stay in this module
MC_DROPOUT_OP = "nnunet_fracture.training.mc_dropout.MCDropout"


class MCDropout(nn.Dropout):
    """Element-wise dropout placed in the U-Net through the plans' ``dropout_op``.

    A class of its own so that MC passes change exactly these modules (and no dropout a network has for other
    reasons). Element-wise rather than channel dropout: the U-Net's first stages have few channels (4-32), and
    dropping whole channels of them at p = 0.5 destroys the input rather than sampling a posterior.
    """


def with_dropout(configuration_manager, p: float = 0.0, dropout_op: str = MC_DROPOUT_OP):
    """A copy of nnU-Net's ``ConfigurationManager`` whose architecture uses ``dropout_op`` at rate ``p``.

    ``configuration_manager.network_arch_init_kwargs`` is the live plans dictionary; it is not modified.

    Raises:
        ValueError: if the plans' network takes no ``dropout_op`` argument (not a dynamic-network-architectures
            U-Net), naming the network class.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    configuration = dict(configuration_manager.configuration)
    architecture = dict(configuration["architecture"])
    kwargs = dict(architecture["arch_kwargs"])
    if "dropout_op" not in kwargs:
        raise ValueError(f"the plans' network {architecture.get('network_class_name')!r} has no 'dropout_op' "
                         f"argument, so MC-Dropout cannot place dropout in it; use a dynamic-network-architectures "
                         f"U-Net (PlainConvUNet, ResidualEncoderUNet) or a network that accepts dropout_op")
    kwargs["dropout_op"] = dropout_op
    kwargs["dropout_op_kwargs"] = {"p": float(p), "inplace": False}
    requires_import = list(architecture.get("_kw_requires_import", ()))
    if "dropout_op" not in requires_import:
        requires_import.append("dropout_op")
    architecture.update(arch_kwargs=kwargs, _kw_requires_import=requires_import)
    configuration["architecture"] = architecture
    return ConfigurationManager(configuration)


def dropout_modules(network: nn.Module) -> list[MCDropout]:
    """The :class:`MCDropout` modules of ``network``."""
    return [m for m in network.modules() if isinstance(m, MCDropout)]


def set_dropout_rate(network: nn.Module, p: float) -> int:
    """Set the rate of every :class:`MCDropout` in ``network`` to ``p``; return how many there are.

    Raises:
        ValueError: if ``p`` is not in ``[0, 1)``.
    """
    check_rate("p", p)
    modules = dropout_modules(network)
    for m in modules:
        m.p = float(p)
    return len(modules)


def check_rate(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"{name} must be a dropout rate in [0, 1), got {p!r}")
    return float(p)


@contextmanager
def mc_dropout_mode(network: nn.Module, p: float) -> Iterator[int]:
    """Inside the block: ``network`` in eval mode except its :class:`MCDropout` modules, which drop at rate ``p``.

    Every module's training flag and every rate are restored afterwards. Yields the number of dropout modules.
    """
    check_rate("p", p)
    modes = {m: m.training for m in network.modules()}
    modules = dropout_modules(network)
    rates = [m.p for m in modules]
    try:
        network.eval()
        for m in modules:
            m.train()
            m.p = float(p)
        yield len(modules)
    finally:
        for m, rate in zip(modules, rates):
            m.p = rate
        for m, training in modes.items():
            m.training = training
