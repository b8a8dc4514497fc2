"""Loss quality on phantoms with full masks: PolyDice-MCD vs nnU-Net's Dice + CE vs Focal Tversky.

    python benchmarks/loss_quality.py [--out benchmarks/work/loss_quality] [--epochs 40] [--iterations 40]
    python benchmarks/loss_quality.py --smoke     # a few iterations, proves the pipeline works (minutes)

Every arm trains on the same phantom training cases (full masks, ``convert --weak mask``; fold 0 of nnU-Net's
split) with the same tiny plans, schedule and sampling share, and is scored on the same held-out phantom test
cases (another seed) with ``nnunet_fracture.evaluation.report.evaluate_folder``:

- **dice_ce**: ``nnUNetTrainerFracture`` - nnU-Net's own Dice + CE loss (the stock trainer with settings);
- **polydice_mcd**: ``nnUNetTrainerPolyDiceMCD`` - PolyDice-1 + CE with MC-Dropout eps1 (defaults: p 0.5,
  N 10, M 10, training dropout 0.1);
- **focal_tversky**: ``nnUNetTrainerFocalTversky`` - Focal Tversky (0.3/0.7/0.75) + focal loss.

Reported per arm, pooled over the test voxels: Dice at P >= 0.5, voxel PR-AUC and the F1 at the best threshold.
Prints a table and writes ``benchmarks/results/loss_quality[_smoke].json``.

The default (40 epochs x 40 iterations, 10 training and 4 test cases, CPU) is sized for <= 25 minutes on a
2-core CPU: each arm trains ~6 minutes there (see the JSON's ``step_seconds``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

TRAIN_ID, TEST_ID = 975, 976
ARMS = {"dice_ce": "nnUNetTrainerFracture", "polydice_mcd": "nnUNetTrainerPolyDiceMCD",
        "focal_tversky": "nnUNetTrainerFocalTversky"}
PLANS = "nnUNetPlansTiny"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/work/loss_quality"), help="working folder, replaced")
    p.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="where the JSON goes")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--train-cases", type=int, default=10)
    p.add_argument("--test-cases", type=int, default=4)
    p.add_argument("--foreground", type=float, default=0.66, help="share of foreground-centred patches (all arms)")
    p.add_argument("--mcd-settings", default="", help="extra NNUNET_FRACTURE_SETTINGS for the PolyDice-MCD arm")
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    p.add_argument("--smoke", action="store_true",
                   help="3 epochs x 3 iterations, 5 + 2 cases, M = 1 (proves the pipeline; numbers meaningless)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _score(summary: dict) -> dict:
    free = summary.get("pooled_threshold_free") or {}
    best = free.get("best_threshold") or {}
    return {"dice": summary["pooled"].get("dice"), "mean_case_dice": summary.get("mean_dice"),
            "pr_auc": free.get("pr_auc"), "best_f1": best.get("f1"), "best_threshold": best.get("threshold")}


def run(args) -> dict:
    from nnunet_fracture.dataset_conversion.generic import read_generic
    from nnunet_fracture.dataset_conversion.phantom import write_phantom
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
    from nnunet_fracture.demo import Steps, fresh_workspace
    from nnunet_fracture.evaluation.report import evaluate_folder
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans
    from nnunet_fracture.stock_commands import run_stock

    out = args.out.resolve()
    env = fresh_workspace(out, args.epochs, args.iterations, args.foreground)
    raw, log, steps = Path(env["nnUNet_raw"]), out / "commands.log", Steps()
    steps.run("phantoms", lambda: (
        write_phantom(out / "phantom_train", n_cases=args.train_cases, seed=args.seed),
        write_phantom(out / "phantom_test", n_cases=args.test_cases, seed=args.seed + 1000)))
    _, test_raw = steps.run("convert --weak mask (train, test)", lambda: (
        write_raw_dataset(read_generic(out / "phantom_train"), TRAIN_ID, "LossTrain", weak="mask", raw_root=raw),
        write_raw_dataset(read_generic(out / "phantom_test"), TEST_ID, "LossTest", weak="mask", raw_root=raw)))
    steps.run("plan + preprocess", run_stock, ["nnUNetv2_plan_and_preprocess", "-d", TRAIN_ID, "-c", "3d_fullres",
                                               "-np", "2", "--verify_dataset_integrity"], log,
              env={"nnUNet_n_proc_DA": "1"})
    steps.run("tiny plans", write_tiny_plans, str(TRAIN_ID))
    base = os.environ["NNUNET_FRACTURE_SETTINGS"]
    scores = {}
    for arm in args.arms:
        trainer = ARMS[arm]
        settings = base
        if arm == "polydice_mcd":
            settings = f"{base} {'mc_every=1 mc_passes=3' if args.smoke else ''} {args.mcd_settings}".strip()
        steps.run(f"train {arm} ({trainer})", run_stock,
                  ["nnUNetv2_train", TRAIN_ID, "3d_fullres", "0", "-tr", trainer, "-p", PLANS, "-device", "cpu"],
                  log, env={"NNUNET_FRACTURE_SETTINGS": settings}, echo=True)
        pred = out / f"pred_{arm}"
        steps.run(f"predict test: {arm}", run_stock,
                  ["nnUNetv2_predict", "-i", test_raw / "imagesTr", "-o", pred, "-d", TRAIN_ID, "-c", "3d_fullres",
                   "-f", "0", "-tr", trainer, "-p", PLANS, "-device", "cpu", "--save_probabilities",
                   "--disable_tta", "-npp", "1", "-nps", "1"], log)
        summary = steps.run(f"evaluate: {arm}", evaluate_folder, pred, test_raw / "groundTruthTr",
                            out / "report" / arm)
        scores[arm] = _score(summary)
    return {"scores": scores, "step_seconds": steps.timings, "total_seconds": round(sum(steps.timings.values()), 1)}


def _fmt(value) -> str:
    return "     n/a" if value is None else f"{value:8.3f}"


def _table(result: dict) -> str:
    rows = [f"{'arm':<15}{'Dice':>8}{'caseDice':>9}{'PR-AUC':>8}{'bestF1':>8}{'@p':>8}"]
    for arm, s in result["scores"].items():
        rows.append(f"{arm:<15}{_fmt(s['dice'])}{_fmt(s['mean_case_dice'])[1:]:>9}{_fmt(s['pr_auc'])}"
                    f"{_fmt(s['best_f1'])}{_fmt(s['best_threshold'])}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.smoke:
        args.epochs, args.iterations, args.train_cases, args.test_cases = 3, 3, 5, 2
        args.out = args.out.with_name(args.out.name + "_smoke")
    result = run(args)
    result["settings"] = {"epochs": args.epochs, "iterations": args.iterations, "train_cases": args.train_cases,
                          "test_cases": args.test_cases, "foreground": args.foreground, "plans": PLANS,
                          "mcd_settings": args.mcd_settings, "smoke": args.smoke, "seed": args.seed,
                          "trainers": {a: ARMS[a] for a in args.arms},
                          "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"}
    print(_table(result))
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"loss_quality{'_smoke' if args.smoke else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path} ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    sys.exit(main())
