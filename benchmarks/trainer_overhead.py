"""Training-iteration time: plugin base trainer vs stock nnUNetTrainer, tiny vs default plans, same run.

    python benchmarks/trainer_overhead.py [--iterations 20] [--default-iterations 3] [--out benchmarks/results]

Builds a phantom dataset (stock planning and preprocessing), then times ``train_step`` on the same batches
source for every (trainer, plans) pair, in rounds whose order reverses every other round, so that drift and warm-up hit all pairs alike.
Prints a table and writes ``trainer_overhead.json``. Ratios are what to quote: absolute seconds depend on the
machine. The goal for the base trainer is a ratio of about 1.0 against stock (it adds no work per iteration);
tiny plans exist to make CPU iterations take well under a second.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

DATASET_ID = 880


def _prepare(work: Path) -> None:
    from nnunet_fracture.dataset_conversion.generic import read_generic
    from nnunet_fracture.dataset_conversion.phantom import write_phantom
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans
    from nnunet_fracture.stock_commands import run_stock

    write_phantom(work / "phantom", n_cases=6, seed=0)
    write_raw_dataset(read_generic(work / "phantom"), DATASET_ID, "Overhead", weak="mask")
    run_stock(["nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", "3d_fullres", "-np", "2"],
              work / "commands.log", env={"nnUNet_n_proc_DA": "1"})
    write_tiny_plans(str(DATASET_ID))


def _trainer(trainer_class, plans_name: str):
    import torch

    folder = Path(os.environ["nnUNet_preprocessed"]) / f"Dataset{DATASET_ID}_Overhead"
    plans = json.loads((folder / f"{plans_name}.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((folder / "dataset.json").read_text())
    trainer = trainer_class(plans, "3d_fullres", 0, dataset_json, torch.device("cpu"))
    trainer.on_train_start()
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    return trainer


def _time_steps(trainer, n: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        trainer.train_step(next(trainer.dataloader_train))
    start = time.perf_counter()
    for _ in range(n):
        trainer.train_step(next(trainer.dataloader_train))
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per round, tiny plans")
    parser.add_argument("--default-iterations", type=int, default=3, help="timed iterations per round, default plans")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, the order reversed every other round (median is reported)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nnunet_fracture_overhead_"))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir()
        os.environ[name] = str(work / name)
    os.environ.update(nnUNet_n_proc_DA="0", nnUNet_compile="f", NNUNET_FRACTURE_SETTINGS="")
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_fracture.trainers import nnUNetTrainerFracture

    print(f"preparing a 6-case phantom dataset in {work} ...", flush=True)
    _prepare(work)
    pairs = [(t, p) for p in ("nnUNetPlansTiny", "nnUNetPlans") for t in (nnUNetTrainer, nnUNetTrainerFracture)]
    trainers = {(t.__name__, p): _trainer(t, p) for t, p in pairs}
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in trainers}
    for round_ in range(args.rounds):
        order = list(trainers.items())
        for key, trainer in (order if round_ % 2 == 0 else order[::-1]):  # alternate who goes first
            n = args.iterations if key[1] == "nnUNetPlansTiny" else args.default_iterations
            seconds[key].append(_time_steps(trainer, n))
            print(f"round {round_ + 1}/{args.rounds} {key[0]:>22} {key[1]:>16}: {seconds[key][-1]:.3f} s/iteration",
                  flush=True)

    median = {key: statistics.median(v) for key, v in seconds.items()}
    rows = []
    for (trainer_name, plans_name), s in median.items():
        rows.append({"trainer": trainer_name, "plans": plans_name, "seconds_per_iteration": round(s, 4),
                     "ratio_vs_stock_same_plans": round(s / median[("nnUNetTrainer", plans_name)], 3),
                     "ratio_vs_default_plans_same_trainer": round(s / median[(trainer_name, "nnUNetPlans")], 4)})
    print(f"\n{'trainer':>22} {'plans':>16} {'s/iter':>8} {'vs stock':>9} {'vs default plans':>17}")
    for r in rows:
        print(f"{r['trainer']:>22} {r['plans']:>16} {r['seconds_per_iteration']:8.3f} "
              f"{r['ratio_vs_stock_same_plans']:9.3f} {r['ratio_vs_default_plans_same_trainer']:17.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "rounds": args.rounds, "iterations": args.iterations,
              "default_iterations": args.default_iterations, "torch_threads": torch.get_num_threads(),
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}}
    (args.out / "trainer_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out / 'trainer_overhead.json'}")


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    main()
