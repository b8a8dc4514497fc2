"""Shared harness of the overhead benchmarks (``trainer_overhead.py``, ``network_overhead.py``).

A phantom dataset planned and preprocessed by the stock command in a fresh temporary nnU-Net workspace; trainers
built in-process exactly as ``nnUNetv2_train`` builds them, up to the first training iteration; ``train_step``
timed in rounds whose order reverses every other round, so that drift and warm-up hit every arm alike.
"""
from __future__ import annotations

import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable, Hashable, Iterable, Optional

DATASET_ID = 880
DATASET_NAME = f"Dataset{DATASET_ID}_Overhead"


def fresh_workspace(prefix: str) -> Path:
    """A new temporary folder holding nnU-Net's three folders, exported to this process's environment together
    with the settings that keep the runs comparable (in-process augmentation, no torch.compile, no plugin
    setting overrides)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir()
        os.environ[name] = str(work / name)
    os.environ.update(nnUNet_n_proc_DA="0", nnUNet_compile="f", NNUNET_FRACTURE_SETTINGS="")
    return work


def prepare_phantom_dataset(work: Path, n_cases: int = 6, dataset_id: int = DATASET_ID, name: str = "Overhead",
                            weak: str = "mask", plans: Optional[dict[str, dict]] = None) -> str:
    """The phantom (written once per ``work``) -> raw dataset ``dataset_id`` with ``weak`` labels (the converter's
    mode: true masks by default), stock 3d_fullres planning and preprocessing, plus small plans next to the
    default ``nnUNetPlans``: ``plans`` maps each plans name to :func:`write_tiny_plans` arguments (default: the
    tiny plans, ``nnUNetPlansTiny``). Returns the dataset's folder name."""
    from nnunet_fracture.dataset_conversion.generic import read_generic
    from nnunet_fracture.dataset_conversion.phantom import write_phantom
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans
    from nnunet_fracture.stock_commands import run_stock

    phantom = work / "phantom"
    if not phantom.is_dir():
        write_phantom(phantom, n_cases=n_cases, seed=0)
    write_raw_dataset(read_generic(phantom), dataset_id, name, weak=weak)
    run_stock(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", "3d_fullres", "-np", "2"],
              work / "commands.log", env={"nnUNet_n_proc_DA": "1"})
    for plans_name, shape in (plans or {"nnUNetPlansTiny": {}}).items():
        write_tiny_plans(str(dataset_id), plans_name=plans_name, **shape)
    return f"Dataset{dataset_id}_{name}"


def make_trainer(trainer_class: type, plans_name: str, device: str = "cpu", configuration: str = "3d_fullres",
                 dataset_name: str = DATASET_NAME):
    """A trainer of ``trainer_class`` on a preprocessed dataset (the phantom of :func:`prepare_phantom_dataset`
    by default), initialised up to its first training iteration."""
    import torch

    folder = Path(os.environ["nnUNet_preprocessed"]) / dataset_name
    plans = json.loads((folder / f"{plans_name}.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((folder / "dataset.json").read_text())
    trainer = trainer_class(plans, configuration, 0, dataset_json, torch.device(device))
    trainer.on_train_start()
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    return trainer


def _synchronize(trainer) -> None:
    if trainer.device.type == "cuda":
        import torch

        torch.cuda.synchronize(trainer.device)


def time_steps(trainer, n: int, warmup: int = 2, batches: Optional[list] = None) -> float:
    """Seconds per ``train_step`` over ``n`` steps after ``warmup`` untimed ones.

    With ``batches`` the steps cycle through these prefetched batches, so only the step itself is timed (network,
    loss, backward, optimizer: what a GPU run with background augmentation workers waits for); without, each step
    draws its batch from the trainer's data loader inside the timed region (augmentation included).
    """
    source = itertools.cycle(batches) if batches else None

    def batch():
        return next(source) if source is not None else next(trainer.dataloader_train)

    for _ in range(warmup):
        trainer.train_step(batch())
    _synchronize(trainer)
    start = time.perf_counter()
    for _ in range(n):
        trainer.train_step(batch())
    _synchronize(trainer)
    return (time.perf_counter() - start) / n


def interleaved_rounds(arms: dict[Hashable, Callable[[], float]], rounds: int,
                       label: Callable[[Hashable], str] = str) -> dict[Hashable, list[float]]:
    """Call every arm once per round, in the given order in even rounds and reversed in odd ones; return each
    arm's measurements (one per round) and print them as they come."""
    seconds: dict[Hashable, list[float]] = {key: [] for key in arms}
    for round_ in range(rounds):
        order = list(arms.items())
        for key, measure in (order if round_ % 2 == 0 else order[::-1]):
            seconds[key].append(measure())
            print(f"round {round_ + 1}/{rounds} {label(key)}: {seconds[key][-1]:.4f} s/iteration", flush=True)
    return seconds


def machine_info(extra: Iterable[tuple[str, object]] = ()) -> dict:
    """CPU count, processor, torch threads and the GPU name (if any) of this machine."""
    import torch

    info = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    info.update(extra)
    return info
