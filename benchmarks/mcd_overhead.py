"""MC-Dropout overhead of nnUNetTrainerPolyDiceMCD, amortized over training, as a ratio against the same trainer
without the MC rounds, measured in the same run.

    python benchmarks/mcd_overhead.py [--plans nnUNetPlansTiny] [--iterations 20] [--repeats 3]
    python benchmarks/mcd_overhead.py --smoke

One trainer, one process: training iterations (``train_step``) and MC rounds (``run_mc_round`` over all training
cases at the defaults N = 10 passes, p = 0.5, one patch per case) are timed alternately, ``--repeats`` times;
medians are used. A round's cost per case and an iteration's cost give the amortized ratio

    (M * iterations * t_iteration + cases_per_round * t_case) / (M * iterations * t_iteration)

at nnU-Net's schedule (250 iterations per epoch) and the plan's M = 10, for this dataset's case count and for
larger datasets, both assessing every case each round and with the default budget (``mc_cases_per_round=0``:
sized from ``mc_max_overhead=0.1``). The goal is <= 1.10 at the defaults. Prints a table and writes
``benchmarks/results/mcd_overhead[_smoke].json``.
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

DATASET_ID = 881
DATASET_SIZES = (100, 500, 2000)


def _prepare(work: Path, n_cases: int, plans: str) -> None:
    from nnunet_fracture.dataset_conversion.generic import read_generic
    from nnunet_fracture.dataset_conversion.phantom import write_phantom
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans
    from nnunet_fracture.stock_commands import run_stock

    write_phantom(work / "phantom", n_cases=n_cases, seed=0)
    write_raw_dataset(read_generic(work / "phantom"), DATASET_ID, "McdOverhead", weak="mask")
    run_stock(["nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", "3d_fullres", "-np", "2"],
              work / "commands.log", env={"nnUNet_n_proc_DA": "1"})
    if plans == "nnUNetPlansTiny":
        write_tiny_plans(str(DATASET_ID))


def _trainer(plans_name: str, device: str):
    import torch

    from nnunet_fracture.trainers import nnUNetTrainerPolyDiceMCD

    folder = Path(os.environ["nnUNet_preprocessed"]) / f"Dataset{DATASET_ID}_McdOverhead"
    plans = json.loads((folder / f"{plans_name}.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((folder / "dataset.json").read_text())
    trainer = nnUNetTrainerPolyDiceMCD(plans, "3d_fullres", 0, dataset_json, torch.device(device))
    trainer.on_train_start()
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    return trainer


def _time_iterations(trainer, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        trainer.train_step(next(trainer.dataloader_train))
    return (time.perf_counter() - start) / n


def _time_round(trainer) -> tuple[float, int]:
    trainer.current_epoch = trainer.mc_every - 1  # the first round's epoch
    start = time.perf_counter()
    values = trainer.run_mc_round()
    seconds = time.perf_counter() - start
    trainer.network.train()
    return seconds, len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", default="nnUNetPlansTiny", choices=("nnUNetPlansTiny", "nnUNetPlans"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", type=int, default=8, help="phantom cases (fold 0 trains on 80 %%)")
    parser.add_argument("--iterations", type=int, default=20, help="timed training iterations per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--schedule-iterations", type=int, default=250,
                        help="iterations per epoch of the schedule the ratio is amortized over (nnU-Net: 250)")
    parser.add_argument("--smoke", action="store_true", help="5 cases, 3 iterations, 1 repeat")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.smoke:
        args.cases, args.iterations, args.repeats = 5, 3, 1

    work = Path(tempfile.mkdtemp(prefix="nnunet_fracture_mcd_overhead_"))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir()
        os.environ[name] = str(work / name)
    # the defaults under test: p 0.5, N 10, M 10, one patch per case; every training case in the timed rounds
    os.environ.update(nnUNet_n_proc_DA="0", nnUNet_compile="f", NNUNET_FRACTURE_SETTINGS="mc_cases_per_round=10000")
    import torch

    print(f"preparing a {args.cases}-case phantom dataset in {work} ...", flush=True)
    _prepare(work, args.cases, args.plans)
    trainer = _trainer(args.plans, args.device)
    iteration_s, case_s = [], []
    _time_iterations(trainer, 2)  # warm-up
    for repeat in range(args.repeats):
        iteration_s.append(_time_iterations(trainer, args.iterations))
        seconds, n = _time_round(trainer)
        case_s.append(seconds / n)
        print(f"repeat {repeat + 1}/{args.repeats}: {iteration_s[-1]:.3f} s/iteration, MC round {seconds:.2f} s "
              f"for {n} cases ({case_s[-1]:.3f} s/case)", flush=True)
    t_it, t_case = statistics.median(iteration_s), statistics.median(case_s)
    m, iters, batch = trainer.mc_every, args.schedule_iterations, trainer.configuration_manager.batch_size
    training = m * iters * t_it

    from nnunet_fracture.training.mc_assessment import auto_cases_per_round

    auto = auto_cases_per_round(trainer.mc_max_overhead, m, iters, batch, trainer.mc_passes,
                                trainer.mc_patches_per_case)
    rows = []
    for n_cases in (n, *DATASET_SIZES):
        for budget, per_round in (("all cases", n_cases), ("default budget", min(auto, n_cases))):
            rows.append({"training_cases": n_cases, "budget": budget, "cases_per_round": per_round,
                         "ratio": round((training + per_round * t_case) / training, 4)})
    print(f"\n{args.plans}, {args.device}: {t_it:.3f} s/iteration (batch {batch}), {t_case:.3f} s per case and round "
          f"(N={trainer.mc_passes}, p={trainer.mc_dropout_p}, {trainer.mc_patches_per_case} patch); amortized over "
          f"M={m} epochs x {iters} iterations; default budget = {auto} cases/round")
    print(f"{'training cases':>15} {'budget':>15} {'cases/round':>12} {'ratio':>7}")
    for r in rows:
        print(f"{r['training_cases']:>15} {r['budget']:>15} {r['cases_per_round']:>12} {r['ratio']:>7.3f}")
    result = {"rows": rows, "seconds_per_iteration": t_it, "seconds_per_case_and_round": t_case,
              "iteration_samples": iteration_s, "case_samples": case_s, "mc_every": m,
              "schedule_iterations": iters, "batch_size": batch, "mc_passes": trainer.mc_passes,
              "mc_dropout_p": trainer.mc_dropout_p, "patches_per_case": trainer.mc_patches_per_case,
              "default_budget_cases_per_round": auto, "goal": "ratio <= 1.10 at the defaults", "plans": args.plans,
              "device": args.device, "smoke": args.smoke, "torch_threads": torch.get_num_threads(),
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"mcd_overhead{'_smoke' if args.smoke else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    main()
