"""The DDP paths of the plugin's trainers, run for real: two processes on the gloo backend (CPU).

nnU-Net 2.8.1's ``-num_gpus`` launcher refuses a non-CUDA device ("DDP training ... is only implemented for cuda
devices"), so the paths the trainers take under DDP are exercised one level below it, in one spawn of two ranks: the
box-validation and class-score gather, an MC-Dropout round (assessed on rank 0, broadcast) and the checkpoint
state rank 0 writes and every rank restores, and nnU-Net's per-rank batch size and oversampling with the weak-box
loader. Each must equal the single-process result.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import distributed as dist

from nnunet_fracture.trainers.polydice_mcd import nnUNetTrainerPolyDiceMCD
from nnunet_fracture.training import mc_rounds
from nnunet_fracture.training.box_sampling import BoxAwareDataLoader
from nnunet_fracture.training.difficulty import DifficultyTable
from nnunet_fracture.training.distributed import broadcast_from_rank0, gather_concatenated

# what each rank holds at the end of a validation epoch: losses, a (1, K) box-count row, class scores
RANK_DATA = {0: (np.array([0.5, 0.25]), np.array([[1, 2, 3]]), np.array([0.9, 0.1])),
             1: (np.array([0.75]), np.array([[10, 20, 30]]), np.array([0.4, 0.6, 0.3]))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[dict, Path]:
    """What each of two gloo ranks computed in :func:`_worker` (one spawn for the module), and its folder."""
    folder = tmp_path_factory.mktemp("ddp")
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(_free_port(), str(folder), results), nprocs=2, join=True)
        return dict(results), folder


def test_two_gloo_ranks_gather_and_broadcast_like_one_process(two_ranks):
    results = {rank: values["gathered"] for rank, values in two_ranks[0].items()}
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


ROUND = {"case_a": 0.3, "case_b": 0.1, "case_c": 0.2}  # what rank 0's MC-Dropout assessment finds
BATCH_SIZES = (2, 3, 4, 5)


def _assess_on_rank0_only(trainer) -> dict:
    if trainer.local_rank != 0:
        raise AssertionError("rank 1 assessed cases itself instead of receiving rank 0's round")
    return dict(ROUND)


def _mc_trainer(rank: int, ddp: bool, folder: Path) -> nnUNetTrainerPolyDiceMCD:
    """A PolyDice-MCD trainer holding only what an MC round and the checkpoint's extra state use (no dataset)."""
    trainer = nnUNetTrainerPolyDiceMCD.__new__(nnUNetTrainerPolyDiceMCD)
    folder.mkdir(parents=True, exist_ok=True)
    vars(trainer).update(is_ddp=ddp, local_rank=rank, current_epoch=9, mc_clock=time.perf_counter(),
                         mc_round_seconds=[], difficulty=DifficultyTable(), epsilon={}, output_folder=str(folder),
                         run_history=[], settings_in_effect={}, print_to_log_file=lambda *args: None,
                         launch={"started": "2026-12-05T00:00:00", "trainer": "nnUNetTrainerPolyDiceMCD",
                                 "plugin_version": "test", "settings": {}})
    return trainer


def _patch_split(batch_size: int) -> tuple[int, int, float]:
    """(patches, box-centred patches, expected box-centred patches under probabilistic oversampling) of this rank's
    batch: nnU-Net's per-rank batch size and oversampling (``_set_batch_size_and_oversample``) with the weak-box
    trainers' 0.5, and :class:`BoxAwareDataLoader`'s foreground rule."""
    trainer = SimpleNamespace(is_ddp=dist.is_initialized(), configuration_manager=SimpleNamespace(batch_size=batch_size),
                              oversample_foreground_percent=0.5)
    nnUNetTrainer._set_batch_size_and_oversample(trainer)
    loader = BoxAwareDataLoader.__new__(BoxAwareDataLoader)
    loader.batch_size, loader.oversample_foreground_percent = trainer.batch_size, trainer.oversample_foreground_percent
    assert BoxAwareDataLoader._oversample_last_XX_percent is nnUNetDataLoader._oversample_last_XX_percent
    return (trainer.batch_size, sum(loader._oversample_last_XX_percent(j) for j in range(trainer.batch_size)),
            trainer.batch_size * trainer.oversample_foreground_percent)


def _worker(rank: int, port: int, folder: str, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        losses, counts, scores = gather_concatenated(*RANK_DATA[rank], enabled=True)
        round_values = broadcast_from_rank0({"case_a": 0.125} if rank == 0 else None, enabled=True)

        mc_rounds.assess_round = _assess_on_rank0_only
        trainer = _mc_trainer(rank, True, Path(folder) / f"rank{rank}")
        mc_rounds.run_round(trainer)
        checkpoint = Path(folder) / "extra_state.pth"
        if rank == 0:  # nnU-Net writes checkpoints on rank 0 only
            torch.save(trainer.get_extra_state(), checkpoint)
        dist.barrier()
        resumed = _mc_trainer(rank, True, Path(folder) / f"resumed{rank}")
        resumed.set_extra_state(torch.load(checkpoint, weights_only=True))  # --c, on every rank

        results[rank] = {"gathered": (losses, counts.sum(axis=0), scores, round_values),
                         "mc_state": (trainer.difficulty.latest(), dict(trainer.epsilon), resumed.difficulty.latest(),
                                      dict(resumed.epsilon), len(resumed.run_history)),
                         "patch_split": [_patch_split(b) for b in BATCH_SIZES]}
    finally:
        dist.destroy_process_group()


def test_mc_round_state_and_checkpoint_of_two_gloo_ranks_match_one_process(two_ranks, tmp_path):
    results, folder = two_ranks
    original = mc_rounds.assess_round
    try:
        mc_rounds.assess_round = lambda trainer: dict(ROUND)
        single = _mc_trainer(0, False, tmp_path / "single")
        mc_rounds.run_round(single)
    finally:
        mc_rounds.assess_round = original
    # harder case -> larger eps1, by rank over [0, 1]
    assert single.epsilon == {"case_b": 0.0, "case_c": 0.5, "case_a": 1.0}
    for rank in (0, 1):
        latest, epsilon, resumed_latest, resumed_epsilon, launches = results[rank]["mc_state"]
        assert latest == ROUND == single.difficulty.latest() and epsilon == single.epsilon
        # rank 0's checkpoint (get_extra_state) gives every rank the same table and eps1 (set_extra_state)
        assert resumed_latest == ROUND and resumed_epsilon == single.epsilon and launches == 1
    assert (folder / "rank0" / "epsilon.csv").is_file() and not any((folder / "rank1").iterdir())  # rank 0 writes


def test_per_rank_batches_add_up_to_the_single_process_batch(two_ranks):
    results = two_ranks[0]
    # one process: round(B * (1 - 0.5)) random patches, the rest centred in boxes
    single = {b: (b, b - round(b * 0.5)) for b in BATCH_SIZES}
    assert single == {2: (2, 1), 3: (3, 1), 4: (4, 2), 5: (5, 3)}  # Python rounds 2.5 to 2
    for i, b in enumerate(BATCH_SIZES):
        (patches_0, box_0, _), (patches_1, box_1, _) = results[0]["patch_split"][i], results[1]["patch_split"][i]
        assert (patches_0 + patches_1, box_0 + box_1) == single[b]


def test_probabilistic_oversampling_under_ddp_keeps_the_share_only_for_even_batches(two_ranks):
    """nnU-Net turns the global rule into per-rank shares of 0 or 1 (or between): with probabilistic oversampling
    (the bench's setting) one process expects B x 0.5 box-centred patches, two ranks expect what their shares give.
    Rank 0 / rank 1 for B = 3: 2 patches at 0 + 1 at 1 -> 1.0; for B = 5: 3 at 1/3 + 2 at 1 -> 3.0."""
    results = two_ranks[0]
    expected = {b: results[0]["patch_split"][i][2] + results[1]["patch_split"][i][2] for i, b in enumerate(BATCH_SIZES)}
    assert expected == pytest.approx({2: 1.0, 3: 1.0, 4: 2.0, 5: 3.0})
    assert {b: b * 0.5 for b in BATCH_SIZES} == {2: 1.0, 3: 1.5, 4: 2.0, 5: 2.5}  # one process
