"""What the plugin's trainers share across DDP ranks: validation numbers gathered from every rank (the weak-box,
classification-head and VAE trainers' ``on_validation_epoch_end``; nnU-Net gathers its own the same way, with
``all_gather_object``) and rank 0's MC-Dropout round broadcast to the others (PolyDice-MCD)."""
from __future__ import annotations

import numpy as np
from torch import distributed as dist


def gather_concatenated(*arrays: np.ndarray, enabled: bool) -> tuple[np.ndarray, ...]:
    """Each of ``arrays`` concatenated along axis 0 over all ranks, in rank order; returned as given when not
    ``enabled`` (a single process). Every rank must call it with the same number of arrays.

    Raises:
        ValueError: no array given.
    """
    if not arrays:
        raise ValueError("gather_concatenated needs at least one array")
    if not enabled:
        return tuple(arrays)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, tuple(np.asarray(a) for a in arrays))
    return tuple(np.concatenate([rank[i] for rank in gathered]) for i in range(len(arrays)))


def broadcast_from_rank0(value: object, enabled: bool) -> object:
    """Rank 0's ``value`` on every rank (any picklable object); ``value`` itself when not ``enabled``."""
    if not enabled:
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]
