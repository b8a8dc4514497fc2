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
import statistics
from pathlib import Path

from overhead_harness import (fresh_workspace, interleaved_rounds, machine_info, make_trainer,
                              prepare_phantom_dataset, time_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per round, tiny plans")
    parser.add_argument("--default-iterations", type=int, default=3, help="timed iterations per round, default plans")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, the order reversed every other round (median is reported)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    work = fresh_workspace("nnunet_fracture_overhead_")
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_fracture.trainers import nnUNetTrainerFracture

    print(f"preparing a 6-case phantom dataset in {work} ...", flush=True)
    prepare_phantom_dataset(work)
    pairs = [(t, p) for p in ("nnUNetPlansTiny", "nnUNetPlans") for t in (nnUNetTrainer, nnUNetTrainerFracture)]
    trainers = {(t.__name__, p): make_trainer(t, p) for t, p in pairs}

    def arm(key):
        n = args.iterations if key[1] == "nnUNetPlansTiny" else args.default_iterations
        return lambda: time_steps(trainers[key], n)

    seconds = interleaved_rounds({key: arm(key) for key in trainers}, args.rounds,
                                 label=lambda key: f"{key[0]:>22} {key[1]:>16}")

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
              "machine": machine_info()}
    (args.out / "trainer_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out / 'trainer_overhead.json'}")


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    main()
