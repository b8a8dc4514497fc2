"""Carry plugin state inside nnU-Net's own checkpoints.

``nnUNetTrainer.save_checkpoint`` builds its dictionary inline, with no hook for extra keys. Its
``optimizer_state`` entry is ``optimizer.state_dict()``, and ``load_checkpoint`` ends with
``optimizer.load_state_dict(...)``. Optimizer state-dict hooks therefore let plugin state travel through nnU-Net's
unchanged save/load: ``checkpoint["optimizer_state"]["nnunet_fracture"]`` holds it. The load hook removes the key
before torch validates the optimizer state; a stock optimizer ignores it, so the checkpoint stays loadable by
nnU-Net and its predictor.
"""
from __future__ import annotations

from typing import Callable

import torch

CHECKPOINT_KEY = "nnunet_fracture"


def attach_extra_state(optimizer: torch.optim.Optimizer, get_state: Callable[[], dict],
                       set_state: Callable[[dict], None]) -> None:
    """Make ``optimizer.state_dict()`` include ``get_state()`` and ``optimizer.load_state_dict`` call ``set_state``.

    A state dict without the key (a stock nnU-Net checkpoint) loads normally and ``set_state`` is not called.
    """
    if not hasattr(optimizer, "register_load_state_dict_pre_hook"):
        raise RuntimeError(f"torch {torch.__version__} has no optimizer state-dict hooks; install a newer torch")
    def add(_optimizer: torch.optim.Optimizer, state_dict: dict) -> dict:
        state_dict[CHECKPOINT_KEY] = get_state()
        return state_dict

    def take(_optimizer: torch.optim.Optimizer, state_dict: dict) -> dict:
        # torch passes a shallow copy, so popping leaves the caller's checkpoint intact
        extra = state_dict.pop(CHECKPOINT_KEY, None)
        if extra is not None:
            set_state(extra)
        return state_dict

    optimizer.register_state_dict_post_hook(add)
    optimizer.register_load_state_dict_pre_hook(take)
