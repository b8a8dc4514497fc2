"""The demo: boxes -> weak model -> pseudo-masks -> report, through the stock nnU-Net commands.

phantom -> convert --weak box -> nnUNetv2_plan_and_preprocess -> tiny plans -> nnUNetv2_train
-tr nnUNetTrainerWeakBBox (short) -> nnUNetv2_predict on held-out cases -> nnunet-fracture pseudo-masks ->
nnunet-fracture evaluate (the model's probabilities, and the pseudo-masks, against the phantom ground truth).

Run it with ``bash scripts/demo.sh`` (sets up the environment first) or ``python -m nnunet_fracture.demo``.
Everything lives under ``--out`` (default ``demo_output/``), which gets its own nnUNet_raw,
nnUNet_preprocessed and nnUNet_results, so a user's own nnU-Net folders are never touched.
The training set and the test set are phantoms drawn with different seeds: the reported Dice is on cases the
model never saw. The default schedule is sized to finish in about 15 minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from nnunet_fracture.stock_commands import run_stock

TRAIN_ID, TEST_ID = 990, 991
TRAINER = "nnUNetTrainerWeakBBox"
PLANS = "nnUNetPlansTiny"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nnunet_fracture.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="working folder (default demo_output)")
    p.add_argument("--train-cases", type=int, default=10, help="phantom training cases (default 10)")
    p.add_argument("--test-cases", type=int, default=3, help="held-out phantom test cases (default 3)")
    p.add_argument("--epochs", type=int, default=50, help="training epochs (default 50)")
    p.add_argument("--iterations", type=int, default=40, help="training iterations per epoch (default 40)")
    p.add_argument("--foreground", type=float, default=0.66,
                   help="share of patches centred in boxes, drawn per sample (default 0.66). nnU-Net's default "
                        "rule gives round(batch x share) box patches per batch: at batch 2, every share from 0.25 to "
                        "0.75 means exactly one, so the demo turns on probabilistic_oversampling")
    p.add_argument("--rule", choices=("fixed", "otsu", "fraction"), default="fixed",
                   help="pseudo-mask rule (default fixed: P >= 0.5 inside each box)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed of the training set (default 0)")
    return p


class Steps:
    """Numbered progress lines (``[n/total]`` when the total is known) with the time each step took."""

    def __init__(self, total: int | None = None):
        self.total, self.number, self.timings = total, 0, {}

    def run(self, name: str, function, *args, **kwargs):
        self.number += 1
        label = f"[{self.number}/{self.total}]" if self.total else f"[{self.number}]"
        print(f"{label} {name} ...", flush=True)
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.timings[name] = round(time.perf_counter() - start, 1)
        print(f"{label} {name}: done in {self.timings[name]:.1f} s", flush=True)
        return result


def fresh_workspace(out: Path, epochs: int, iterations: int, foreground: float) -> dict[str, str]:
    """Replace ``out`` by empty nnUNet_raw / _preprocessed / _results folders; return the environment that points
    the stock commands at them, with a short CPU schedule in ``NNUNET_FRACTURE_SETTINGS`` (nnU-Net's final
    validation skipped: the demo scores its own held-out cases). This process's environment is left alone."""
    from nnunet_fracture.trainer_discovery import trainer_path

    if out.exists():
        shutil.rmtree(out)
    env = {name: str(out / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for folder in env.values():
        Path(folder).mkdir(parents=True)
    env.update(nnUNet_extTrainer=str(trainer_path()), nnUNet_compile="f", nnUNet_n_proc_DA="2",
               NNUNET_FRACTURE_SETTINGS=f"num_epochs={epochs} num_iterations_per_epoch={iterations} "
                                        f"num_val_iterations_per_epoch={max(2, iterations // 8)} "
                                        f"oversample_foreground_percent={foreground} "
                                        f"probabilistic_oversampling=true final_validation=false")
    return env


def run_demo(out: Path, train_cases: int = 10, test_cases: int = 3, epochs: int = 50, iterations: int = 40,
             foreground: float = 0.66, seed: int = 0, rule: str = "fixed") -> dict:
    """Run the whole demo in ``out`` (replaced if it exists) and return its summary."""
    from nnunet_fracture.dataset_conversion.generic import read_generic
    from nnunet_fracture.dataset_conversion.phantom import write_phantom
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
    from nnunet_fracture.environment import scoped_environ
    from nnunet_fracture.evaluation.report import evaluate_folder
    from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans

    out = out.resolve()
    env = fresh_workspace(out, epochs, iterations, foreground)
    log = out / "demo_log.txt"
    raw = Path(env["nnUNet_raw"])
    steps = Steps(9)
    steps.run(f"phantom: {train_cases} training + {test_cases} test cases", lambda: (
        write_phantom(out / "phantom_train", n_cases=train_cases, seed=seed),
        write_phantom(out / "phantom_test", n_cases=test_cases, seed=seed + 1000)))
    train_raw, test_raw = steps.run("convert generic --weak box (labels: box numbers; masks kept for scoring)",
                                    lambda: (
        write_raw_dataset(read_generic(out / "phantom_train"), TRAIN_ID, "DemoTrain", weak="box", raw_root=raw),
        write_raw_dataset(read_generic(out / "phantom_test"), TEST_ID, "DemoTest", weak="box", raw_root=raw)))
    steps.run("nnUNetv2_plan_and_preprocess (stock)", run_stock,
              ["nnUNetv2_plan_and_preprocess", "-d", TRAIN_ID, "-c", "3d_fullres", "-np", "2",
               "--verify_dataset_integrity"], log, env)

    def tiny_plans() -> None:
        with scoped_environ(env):  # the planning helper reads nnUNet_preprocessed
            write_tiny_plans(str(TRAIN_ID))

    steps.run("nnunet-fracture tiny-plans", tiny_plans)
    steps.run(f"nnUNetv2_train (stock) -tr {TRAINER}, {epochs} epochs x {iterations} iterations", run_stock,
              ["nnUNetv2_train", TRAIN_ID, "3d_fullres", "0", "-tr", TRAINER, "-p", PLANS, "-device", "cpu"],
              log, env, echo=True)
    predictions = out / "predictions"
    steps.run("nnUNetv2_predict (stock) on the held-out test cases", run_stock,
              ["nnUNetv2_predict", "-i", test_raw / "imagesTr", "-o", predictions, "-d", TRAIN_ID,
               "-c", "3d_fullres", "-f", "0", "-tr", TRAINER, "-p", PLANS, "-device", "cpu",
               "--save_probabilities", "-npp", "1", "-nps", "1"], log, env)
    pseudo = out / "pseudo_masks"
    steps.run(f"nnunet-fracture pseudo-masks (rule {rule}) inside the test cases' boxes", write_pseudo_masks,
              [predictions], test_raw, pseudo, rule=rule)
    model = steps.run("evaluate: the model's probabilities vs ground truth (+ overlay PNGs)", evaluate_folder,
                      predictions, test_raw / "groundTruthTr", out / "report" / "model",
                      images=test_raw / "imagesTr")
    summary = steps.run("evaluate: the pseudo-masks vs ground truth", evaluate_folder, pseudo / "masks",
                        test_raw / "groundTruthTr", out / "report" / "pseudo_masks", images=test_raw / "imagesTr")
    result = {"summary": summary, "model_summary": model, "step_seconds": steps.timings,
              "total_seconds": round(sum(steps.timings.values()), 1),
              "settings": {"train_cases": train_cases, "test_cases": test_cases, "epochs": epochs,
                           "iterations": iterations, "foreground": foreground, "seed": seed, "trainer": TRAINER, "plans": PLANS,
                           "rule": rule}}
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2) + "\n")
    threshold_free = model.get("pooled_threshold_free") or {}
    pr_auc = threshold_free.get("pr_auc")
    print(f"\nHeld-out pseudo-mask Dice (mean over {summary['n_cases']} test cases): {summary['mean_dice']:.3f}; "
          f"pooled {summary['pooled']['dice']:.3f}. Model probabilities: pooled voxel PR-AUC "
          f"{'n/a' if pr_auc is None else f'{pr_auc:.3f}'}")
    print(f"Total {result['total_seconds']:.0f} s. Reports: {out / 'report'} (model/, pseudo_masks/: metrics.csv, "
          f"summary.json, figures/); pseudo-masks and uncertainty maps: {pseudo}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run_demo(args.out, args.train_cases, args.test_cases, args.epochs, args.iterations, args.foreground, args.seed,
             args.rule)
    return 0


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    sys.exit(main())
