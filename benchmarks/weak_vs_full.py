"""Weak boxes vs full masks vs box filling, and the flywheel step, on the same phantom cases.

    python benchmarks/weak_vs_full.py [--out benchmarks/work/weak_vs_full] [--full]

Every arm is trained on the same phantom training cases (fold 0 of nnU-Net's split) and scored on the same
held-out phantom test cases (a different seed) against their ground-truth fracture masks:

- **full**: the stock-equivalent trainer (``nnUNetTrainerFracture``) on the true masks - the upper bound;
- **weak**: ``nnUNetTrainerWeakBBox`` on the boxes alone, then ``nnunet-fracture pseudo-masks`` (each rule);
- **box fill**: every box filled - the lower bound;
- **flywheel**: the weak model's pseudo-masks of the training cases become a new dataset
  (``pseudo-masks --export-dataset``) on which the stock-equivalent trainer is retrained.

All training, planning and prediction runs through the stock ``nnUNetv2_*`` commands with the same plans,
schedule and sampling share. Reported per arm, pooled over the test voxels: Dice/IoU/precision/recall of the
arm's mask, and, from its probability map, the voxel PR-AUC and the F1 at the best threshold. Ratios
(weak / full, weak - box fill) are what to quote. Prints a table and writes ``weak_vs_full.json``.

The default is sized for a 2-core CPU (tiny plans, 1.5 mm phantoms, 50 x 40 iterations, no test-time mirroring);
``--full`` uses nnU-Net's default plans, 1.5 mm phantoms and a longer schedule for a GPU machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

TRAIN_ID, TEST_ID, WEAK_ID, FLYWHEEL_ID = 970, 971, 972, 973
RULES = ("fixed", "otsu", "fraction")

# 2 mm phantoms with 40 x 40 iterations were tried first: the fully supervised arm learned nothing (Dice 0)
CPU = dict(train_cases=10, test_cases=4, spacing=None, epochs=50, iterations=40, plans="nnUNetPlansTiny",
           device="cpu", tta=False)
GPU = dict(train_cases=40, test_cases=10, spacing=None, epochs=200, iterations=100, plans="nnUNetPlans",
           device="cuda", tta=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/work/weak_vs_full"),
                   help="working folder, replaced (default benchmarks/work/weak_vs_full)")
    p.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="where the JSON goes")
    p.add_argument("--full", action="store_true", help="GPU scale: default plans, more cases, longer schedule")
    p.add_argument("--epochs", type=int, default=None, help="override the schedule's epochs")
    p.add_argument("--iterations", type=int, default=None, help="override iterations per epoch")
    p.add_argument("--foreground", type=float, default=0.66,
                   help="share of patches centred on foreground (masks or boxes), the same for every arm")
    p.add_argument("--flywheel-rule", choices=RULES, default="fraction",
                   help="pseudo-mask rule for the flywheel (default fraction: best on the test cases of a first run)")
    p.add_argument("--weak-settings", default="",
                   help="extra NNUNET_FRACTURE_SETTINGS for the weak trainer only, e.g. 'bag_aggregation=smooth_max'")
    p.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="phantom spacing in mm (default: the phantom's 1.5 mm isotropic)")
    p.add_argument("--tag", default="", help="suffix of the result file name, e.g. '_2mm'")
    p.add_argument("--seed", type=int, default=0)
    return p


class Score:
    """Pooled voxel scores of one arm over the test cases."""

    def __init__(self) -> None:
        from nnunet_fracture.evaluation.segmentation_metrics import Confusion
        from nnunet_fracture.evaluation.threshold_curves import ScoreHistogram

        self.confusion, self.histogram, self.per_case_dice = Confusion(0, 0, 0), ScoreHistogram(), []

    def add(self, mask: np.ndarray, gt: np.ndarray, probability: np.ndarray) -> None:
        from nnunet_fracture.evaluation.segmentation_metrics import Confusion

        case = Confusion.from_masks(mask.astype(bool), gt)
        self.confusion = self.confusion + case
        self.per_case_dice.append(case.dice)
        self.histogram.add(probability, gt)

    def as_dict(self) -> dict:
        best = self.histogram.best_threshold()
        return {"dice": self.confusion.dice, "iou": self.confusion.iou, "precision": self.confusion.precision,
                "recall": self.confusion.recall, "mean_case_dice": float(np.nanmean(self.per_case_dice)),
                "pr_auc": self.histogram.average_precision(), "best_f1": best.f1,
                "best_threshold": best.threshold}


def _read(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _predict(model_trainer: str, dataset_id: int, images: Path, out: Path, cfg: dict, log: Path) -> None:
    from nnunet_fracture.stock_commands import run_stock

    run_stock(["nnUNetv2_predict", "-i", images, "-o", out, "-d", dataset_id, "-c", "3d_fullres", "-f", "0",
               "-tr", model_trainer, "-p", cfg["plans"], "-device", cfg["device"], "--save_probabilities",
               "-npp", "1", "-nps", "1"] + ([] if cfg["tta"] else ["--disable_tta"]), log)


def _plan(dataset_id: int, cfg: dict, log: Path) -> None:
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans
    from nnunet_fracture.stock_commands import run_stock

    run_stock(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", "3d_fullres", "-np", "2",
               "--verify_dataset_integrity"], log, env={"nnUNet_n_proc_DA": "1"})
    if cfg["plans"] == "nnUNetPlansTiny":
        write_tiny_plans(str(dataset_id))


def _train(dataset_id: int, trainer: str, cfg: dict, log: Path, extra_settings: str = "") -> None:
    from nnunet_fracture.stock_commands import run_stock

    settings = f"{os.environ['NNUNET_FRACTURE_SETTINGS']} {extra_settings}".strip()
    run_stock(["nnUNetv2_train", dataset_id, "3d_fullres", "0", "-tr", trainer, "-p", cfg["plans"],
               "-device", cfg["device"]], log, env={"NNUNET_FRACTURE_SETTINGS": settings}, echo=True)


def run(out: Path, cfg: dict, foreground: float, flywheel_rule: str, seed: int, weak_settings: str = "") -> dict:
    from nnunet_fracture.dataset_conversion.generic import read_generic
    from nnunet_fracture.dataset_conversion.phantom import write_phantom
    from nnunet_fracture.demo import Steps, fresh_workspace
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
    from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks

    out = out.resolve()
    env = fresh_workspace(out, cfg["epochs"], cfg["iterations"], foreground)  # the demo's set-up
    raw, log, steps = Path(env["nnUNet_raw"]), out / "commands.log", Steps()  # the demo's progress lines

    steps.run("phantoms", lambda: (
        write_phantom(out / "phantom_train", n_cases=cfg["train_cases"], seed=seed, spacing=cfg["spacing"]),
        write_phantom(out / "phantom_test", n_cases=cfg["test_cases"], seed=seed + 1000, spacing=cfg["spacing"])))
    full_raw, weak_raw, test_raw = steps.run("convert (mask, box, test)", lambda: (
        write_raw_dataset(read_generic(out / "phantom_train"), TRAIN_ID, "WvfFull", weak="mask", raw_root=raw),
        write_raw_dataset(read_generic(out / "phantom_train"), WEAK_ID, "WvfWeak", weak="box", raw_root=raw),
        write_raw_dataset(read_generic(out / "phantom_test"), TEST_ID, "WvfTest", weak="box", raw_root=raw)))
    steps.run("plan + preprocess: full", _plan, TRAIN_ID, cfg, log)
    steps.run("plan + preprocess: weak", _plan, WEAK_ID, cfg, log)
    steps.run("train full (nnUNetTrainerFracture on masks)", _train, TRAIN_ID, "nnUNetTrainerFracture", cfg, log)
    steps.run("train weak (nnUNetTrainerWeakBBox on boxes)", _train, WEAK_ID, "nnUNetTrainerWeakBBox", cfg, log,
              weak_settings)
    pred = {arm: out / f"pred_{arm}" for arm in ("full", "weak", "weak_train", "flywheel")}
    steps.run("predict test: full", _predict, "nnUNetTrainerFracture", TRAIN_ID, test_raw / "imagesTr",
              pred["full"], cfg, log)
    steps.run("predict test: weak", _predict, "nnUNetTrainerWeakBBox", WEAK_ID, test_raw / "imagesTr",
              pred["weak"], cfg, log)
    for rule in RULES:
        steps.run(f"pseudo-masks test ({rule})", write_pseudo_masks, [pred["weak"]], test_raw,
                  out / f"pseudo_test_{rule}", rule=rule)

    # flywheel: pseudo-masks of the training cases -> new dataset -> stock-equivalent trainer
    steps.run("predict training cases: weak", _predict, "nnUNetTrainerWeakBBox", WEAK_ID, weak_raw / "imagesTr",
              pred["weak_train"], cfg, log)
    steps.run(f"pseudo-masks training cases ({flywheel_rule}) + export", write_pseudo_masks,
              [pred["weak_train"]], weak_raw, out / "pseudo_train", rule=flywheel_rule,
              export_dataset=FLYWHEEL_ID, export_name="WvfFlywheel")
    steps.run("plan + preprocess: flywheel", _plan, FLYWHEEL_ID, cfg, log)
    steps.run("train flywheel (nnUNetTrainerFracture on pseudo-masks)", _train, FLYWHEEL_ID,
              "nnUNetTrainerFracture", cfg, log)
    steps.run("predict test: flywheel", _predict, "nnUNetTrainerFracture", FLYWHEEL_ID, test_raw / "imagesTr",
              pred["flywheel"], cfg, log)

    result = score_arms(out, test_raw, weak_raw, pred)
    result.update(step_seconds=steps.timings, total_seconds=round(sum(steps.timings.values()), 1))
    return result


def score_arms(out: Path, test_raw: Path, weak_raw: Path, pred: dict) -> dict:
    """Pool every arm's scores over the test cases (and the flywheel labels over the training cases)."""
    from nnunet_fracture.inference.probability_files import load_fracture_probability

    arms = {name: Score() for name in ("full", "full_in_boxes", *(f"weak_{r}" for r in RULES), "box_fill",
                                       "flywheel")}
    pseudo_train = Score()
    for gt_file in sorted((test_raw / "groundTruthTr").glob("*.nii.gz")):
        case = gt_file.name[: -len(".nii.gz")]
        gt = _read(gt_file) > 0
        in_box = _read(test_raw / "labelsTr" / gt_file.name) > 0
        p_full = load_fracture_probability(pred["full"] / f"{case}.npz", case, gt.shape)
        p_weak = load_fracture_probability(pred["weak"] / f"{case}.npz", case, gt.shape)
        p_fly = load_fracture_probability(pred["flywheel"] / f"{case}.npz", case, gt.shape)
        arms["full"].add(_read(pred["full"] / gt_file.name), gt, p_full)
        arms["full_in_boxes"].add((p_full >= 0.5) & in_box, gt, p_full * in_box)
        for rule in RULES:
            arms[f"weak_{rule}"].add(_read(out / f"pseudo_test_{rule}" / "masks" / gt_file.name), gt, p_weak * in_box)
        arms["box_fill"].add(in_box, gt, in_box.astype(np.float32))
        arms["flywheel"].add(_read(pred["flywheel"] / gt_file.name), gt, p_fly)
    for gt_file in sorted((weak_raw / "groundTruthTr").glob("*.nii.gz")):
        case = gt_file.name[: -len(".nii.gz")]
        gt = _read(gt_file) > 0
        p = load_fracture_probability(pred["weak_train"] / f"{case}.npz", case, gt.shape)
        pseudo_train.add(_read(out / "pseudo_train" / "masks" / gt_file.name), gt, p)

    scores = {name: score.as_dict() for name, score in arms.items()}
    best_rule = max(RULES, key=lambda r: scores[f"weak_{r}"]["dice"])
    weak, full, fill = scores[f"weak_{best_rule}"], scores["full"], scores["box_fill"]
    return {
        "scores": scores,
        "pseudo_masks_of_training_cases": pseudo_train.as_dict(),
        "best_rule": best_rule,
        "weak_over_full_dice": weak["dice"] / full["dice"] if full["dice"] else None,
        "weak_over_full_in_boxes_dice": (weak["dice"] / scores["full_in_boxes"]["dice"]
                                         if scores["full_in_boxes"]["dice"] else None),
        "weak_minus_box_fill_dice": weak["dice"] - fill["dice"],
        "flywheel_over_full_dice": scores["flywheel"]["dice"] / full["dice"] if full["dice"] else None,
        "goals": {"weak_over_full_dice": ">= 0.97", "weak_minus_box_fill_dice": ">= 0.30"},
    }


def _table(result: dict) -> str:
    rows = [f"{'arm':<16}{'Dice':>7}{'IoU':>7}{'prec':>7}{'recall':>7}{'PR-AUC':>8}{'bestF1':>8}{'@p':>8}"]
    for name, s in result["scores"].items():
        rows.append(f"{name:<16}{s['dice']:7.3f}{s['iou']:7.3f}{s['precision']:7.3f}{s['recall']:7.3f}"
                    f"{s['pr_auc']:8.3f}{s['best_f1']:8.3f}{s['best_threshold']:8.4f}")
    t = result["pseudo_masks_of_training_cases"]
    rows.append(f"pseudo-masks of the training cases (flywheel labels): Dice {t['dice']:.3f}")
    def ratio(key: str) -> str:
        value = result[key]
        return "n/a (full Dice is 0)" if value is None else f"{value:.3f}"

    rows.append(f"weak ({result['best_rule']}) / full Dice = {ratio('weak_over_full_dice')} (goal >= 0.97); "
                f"weak / full-in-boxes = {ratio('weak_over_full_in_boxes_dice')}; weak - box fill = "
                f"{result['weak_minus_box_fill_dice']:+.3f} (goal >= +0.30); flywheel / full = "
                f"{ratio('flywheel_over_full_dice')}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = dict(GPU if args.full else CPU)
    cfg.update({k: v for k, v in (("epochs", args.epochs), ("iterations", args.iterations),
                                  ("spacing", args.spacing)) if v is not None})
    result = run(args.out, cfg, args.foreground, args.flywheel_rule, args.seed, args.weak_settings)
    result["settings"] = {**cfg, "foreground": args.foreground, "flywheel_rule": args.flywheel_rule,
                          "weak_settings": args.weak_settings,
                          "seed": args.seed, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"}
    print(_table(result))
    args.results.mkdir(parents=True, exist_ok=True)
    name = f"weak_vs_full{'_full' if args.full else ''}{args.tag}.json"
    (args.results / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.results / name} ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    sys.exit(main())
