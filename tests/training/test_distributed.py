"""The DDP paths of the plugin's trainers, run for real: two processes on the gloo backend (CPU).

nnU-Net's own ``-num_gpus`` launcher needs CUDA devices, so the helpers the trainers call under DDP are exercised
one level below it: what two ranks gather or broadcast must equal the single-process result.
"""
from __future__ import annotations

import os
import socket

import numpy as np
import torch.multiprocessing as mp
from torch import distributed as dist

from nnunet_fracture.training.distributed import broadcast_from_rank0, gather_concatenated

# what each rank holds at the end of a validation epoch: losses, a (1, K) box-count row, class scores
RANK_DATA = {0: (np.array([0.5, 0.25]), np.array([[1, 2, 3]]), np.array([0.9, 0.1])),
             1: (np.array([0.75]), np.array([[10, 20, 30]]), np.array([0.4, 0.6, 0.3]))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        losses, counts, scores = gather_concatenated(*RANK_DATA[rank], enabled=True)
        round_values = broadcast_from_rank0({"case_a": 0.125} if rank == 0 else None, enabled=True)
        results[rank] = (losses, counts.sum(axis=0), scores, round_values)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_gather_and_broadcast_like_one_process():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
        results = dict(results)
    # the single-process result over the same numbers
    single = gather_concatenated(*(np.concatenate([RANK_DATA[0][i], RANK_DATA[1][i]]) for i in range(3)),
                                 enabled=False)
    for rank in (0, 1):
        losses, counts, scores, round_values = results[rank]
        np.testing.assert_array_equal(losses, [0.5, 0.25, 0.75])
        np.testing.assert_array_equal(losses, single[0])
        np.testing.assert_array_equal(counts, [11, 22, 33])
        np.testing.assert_array_equal(scores, [0.9, 0.1, 0.4, 0.6, 0.3])
        assert round_values == {"case_a": 0.125}  # rank 1 passed None


def test_single_process_passes_through():
    a = np.array([1.0, 2.0])
    assert gather_concatenated(a, enabled=False)[0] is a
    assert broadcast_from_rank0("x", enabled=False) == "x"
