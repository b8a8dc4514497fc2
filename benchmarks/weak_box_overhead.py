"""Training-iteration time of the weak-box recipes vs stock nnUNetTrainer: same images, same plans, same run.

    python benchmarks/weak_box_overhead.py [--iterations 10] [--rounds 2] [--out benchmarks/results]

Issue goal: the default ``nnUNetTrainerWeakBBox`` recipe costs <= 1.10 of a stock iteration, and the HU affinity
term does not dominate the step. One 6-case phantom is converted twice by the stock-command pipeline - true masks
for the stock trainer, box numbers for the weak-box trainers - and planned with the stock planner (the images are
the same, so the plans' network and patch are too; the script checks). On both datasets it writes the tiny
plans and the quality bench's plans (32 features, patch 48, batch 2). Each (trainer, plans) arm is timed two
ways, in interleaved rounds whose order reverses every other round:

- ``step``: ``train_step`` on prefetched batches (network, loss, backward, optimizer: what a GPU run waits for
  while augmentation workers fill the queue);
- ``step+data``: the data loader inside the timed region too (a CPU run without workers).

Prints a table and writes ``weak_box_overhead.json``; quote the ratios, not the seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from overhead_harness import (fresh_workspace, interleaved_rounds, machine_info, make_trainer,
                              prepare_phantom_dataset, time_steps)

MASK_ID, BOX_ID = 880, 881
PLANS = {"nnUNetPlansTiny": dict(max_features=16, max_patch=32, batch_size=2),
         "nnUNetPlansBench": dict(max_features=32, max_patch=48, batch_size=2)}
# (arm name, trainer, dataset, NNUNET_FRACTURE_SETTINGS)
ARMS = (("stock nnUNetTrainer", "nnUNetTrainer", MASK_ID, ""),
        ("WeakBBox default", "nnUNetTrainerWeakBBox", BOX_ID, ""),
        ("WeakBBox + affinity", "nnUNetTrainerWeakBBox", BOX_ID, "lambda_affinity=1"),
        ("WeakBBox + border affinity", "nnUNetTrainerWeakBBox", BOX_ID,
         "lambda_affinity=1 affinity_border_pairs=true"))


def prepare(work: Path) -> dict[int, str]:
    """The phantom as a mask dataset and a box dataset, stock-planned and preprocessed, with both plans."""
    names = {dataset_id: prepare_phantom_dataset(work, dataset_id=dataset_id, name=f"Overhead{weak.capitalize()}",
                                                 weak=weak, plans=PLANS)
             for dataset_id, weak in ((MASK_ID, "mask"), (BOX_ID, "box"))}
    for plans_name in PLANS:
        configs = [json.loads((Path(os.environ["nnUNet_preprocessed"]) / names[d] / f"{plans_name}.json")
                              .read_text())["configurations"]["3d_fullres"] for d in (MASK_ID, BOX_ID)]
        if any(configs[0][k] != configs[1][k] for k in ("patch_size", "batch_size", "architecture")):
            raise RuntimeError(f"{plans_name}: the mask and box datasets were planned differently; the timings "
                               "would not compare the same network")
    return names


def build(trainer_name: str, dataset: str, plans_name: str, settings: str):
    """A trainer initialised up to its first iteration, with ``settings`` in force while it is built."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_fracture import trainers

    trainer_class = nnUNetTrainer if trainer_name == "nnUNetTrainer" else getattr(trainers, trainer_name)
    os.environ["NNUNET_FRACTURE_SETTINGS"] = settings
    try:
        return make_trainer(trainer_class, plans_name, dataset_name=dataset)
    finally:
        os.environ["NNUNET_FRACTURE_SETTINGS"] = ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per arm and round")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, the order reversed every other round (median is reported)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    work = fresh_workspace("nnunet_fracture_weak_overhead_")
    print(f"preparing a 6-case phantom as mask and box datasets in {work} ...", flush=True)
    names = prepare(work)
    measures = {}
    for plans_name in PLANS:
        for arm, trainer_name, dataset_id, settings in ARMS:
            trainer = build(trainer_name, names[dataset_id], plans_name, settings)
            batches = [next(trainer.dataloader_train) for _ in range(4)]
            measures[arm, plans_name, "step"] = (lambda t=trainer, b=batches: time_steps(t, args.iterations,
                                                                                         batches=b))
            measures[arm, plans_name, "step+data"] = lambda t=trainer: time_steps(t, args.iterations)
    seconds = interleaved_rounds(measures, args.rounds, label=lambda key: f"{key[0]:>27} {key[1]:>16} {key[2]:>9}")

    median = {key: statistics.median(v) for key, v in seconds.items()}
    rows = [{"arm": arm, "plans": plans_name, "timed": timed, "seconds_per_iteration": round(s, 4),
             "ratio_vs_stock": round(s / median[ARMS[0][0], plans_name, timed], 3)}
            for (arm, plans_name, timed), s in median.items()]
    print(f"\n{'arm':>27} {'plans':>16} {'timed':>9} {'s/iter':>8} {'vs stock':>9}")
    for r in sorted(rows, key=lambda r: (r["plans"], r["timed"])):
        print(f"{r['arm']:>27} {r['plans']:>16} {r['timed']:>9} {r['seconds_per_iteration']:8.3f} "
              f"{r['ratio_vs_stock']:9.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "rounds": args.rounds, "iterations": args.iterations,
              "settings": {arm: settings for arm, _, _, settings in ARMS},
              "machine": machine_info([("load_average_at_end", os.getloadavg())])}
    (args.out / "weak_box_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out / 'weak_box_overhead.json'}")


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    main()
