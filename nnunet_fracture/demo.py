"""The demo: boxes -> weak model -> pseudo-masks (-> strong model) -> report, through the stock nnU-Net commands.

phantom -> convert --weak box -> nnUNetv2_plan_and_preprocess -> tiny-plans (features up to 32 as on the quality
bench, patch 40^3 instead of its 48^3) -> nnUNetv2_train -tr nnUNetTrainerWeakBBox (short) -> nnUNetv2_predict on
held-out cases -> nnunet-fracture pseudo-masks (rule fixed, random walker refinement, 1.5 mm inside each boxed
vertebra) -> nnunet-fracture evaluate
(the weak model's probabilities over whole volumes, and its pseudo-masks, against the phantom ground truth).

With ``--rounds N`` the flywheel follows: nnUNetv2_predict on the training cases -> nnunet-fracture self-train (N
rounds: the training cases' pseudo-masks become a dataset with nnU-Net's ignore label on uncertain voxels, the
nnUNetTrainerPresentDice, self-train's default, learns it for ``--strong-epochs``) -> nnUNetv2_predict with the strong
model -> evaluate it over whole volumes, as it is and after nnunet-fracture postprocess (its components under 10 % of
the last round's typical label component removed), and its pseudo-masks in the test boxes (the same rule and options
on the strong model's probabilities: the bench's best pseudo-masks). On the quality bench one such round is the
largest single step (README); it costs about 20 minutes per round here, so the default stops before it.

Run it with ``bash scripts/demo.sh`` (sets up the environment first) or ``python -m nnunet_fracture.demo``.
Everything lives under ``--out`` (default ``demo_output/``), which gets its own nnUNet_raw,
nnUNet_preprocessed and nnUNet_results, so a user's own nnU-Net folders are never touched.
The training set and the test set are phantoms drawn with different seeds: the reported Dice is on cases the
model never saw. The default schedule is sized to finish in under 10 minutes on a 2-core CPU; it demonstrates the
pipeline, the quality bench measures its quality.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from nnunet_fracture.stock_commands import predict_command, run_stock

TRAIN_ID, TEST_ID, FLYWHEEL_ID = 990, 991, 992
TRAINER = "nnUNetTrainerWeakBBox"
STRONG_TRAINER = "nnUNetTrainerPresentDice"  # self-train's default, reading the demo's schedule from the settings
PLANS = "nnUNetPlansDemo"
# the quality bench's features with a smaller patch: a 40^3 iteration costs about two thirds of a 48^3 one on a
# 2-core CPU (0.34 vs 0.53 s), so the demo trains 1,350 iterations in its 10 minutes instead of about 950 (README)
MAX_FEATURES, MAX_PATCH = 32, 40


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nnunet_fracture.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="working folder (default demo_output)")
    p.add_argument("--train-cases", type=int, default=10, help="phantom training cases (default 10)")
    p.add_argument("--test-cases", type=int, default=3, help="held-out phantom test cases (default 3)")
    p.add_argument("--epochs", type=int, default=45, help="weak model's training epochs (default 45)")
    p.add_argument("--iterations", type=int, default=30, help="training iterations per epoch (default 30)")
    p.add_argument("--foreground", type=float, default=0.66,
                   help="share of patches centred in boxes, drawn per sample (default 0.66). nnU-Net's default "
                        "rule gives round(batch x share) box patches per batch: at batch 2, every share from 0.25 to "
                        "0.75 means exactly one, so the demo turns on probabilistic_oversampling")
    p.add_argument("--rule", choices=("fixed", "otsu", "fraction"), default="fixed",
                   help="pseudo-mask rule (default fixed: P >= 0.5 inside each box)")
    p.add_argument("--inside-vertebra", type=float, default=1.5, metavar="SHELL_MM",
                   help="pseudo-masks keep only voxels more than SHELL_MM inside the vertebra each box names (the "
                        "phantom's vertebra maps; default 1.5: its cortical shell left out; a negative value turns "
                        "it off)")
    p.add_argument("--dark-lesions", type=float, default=100.0, metavar="HU",
                   help="with --inside-vertebra: a box whose P prefers the darker half of its bone (a cleft) gets its "
                        "bone more than HU below the median as its mask (default 100; 0 turns it off)")
    p.add_argument("--dark-grow", type=float, default=75.0, metavar="HU",
                   help="with --dark-lesions: each such mask grows through its bone more than HU below the median "
                        "(default 75; 0 turns it off)")
    p.add_argument("--rounds", type=int, default=0,
                   help="self-training rounds after the weak model's pseudo-masks (default 0): each turns the training "
                        "cases' pseudo-masks into a dataset and trains nnUNetTrainerPresentDice on it; the last "
                        "round's model (the strong model) is scored on whole volumes. About 20 minutes per round on a "
                        "2-core CPU")
    p.add_argument("--strong-epochs", type=int, default=100,
                   help="epochs of each self-training round (default 100, x --iterations). A fully supervised model "
                        "needs about 3,000 iterations on this data before it predicts P >= 0.5 anywhere")
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


def schedule(epochs: int, iterations: int, foreground: float) -> str:
    """The ``NNUNET_FRACTURE_SETTINGS`` of a short CPU schedule: nnU-Net's final validation skipped (the demo scores
    its own held-out cases), probabilistic oversampling so the foreground share takes effect at batch 2."""
    return (f"num_epochs={epochs} num_iterations_per_epoch={iterations} "
            f"num_val_iterations_per_epoch={max(2, iterations // 8)} oversample_foreground_percent={foreground} "
            f"probabilistic_oversampling=true final_validation=false")


def fresh_workspace(out: Path, epochs: int, iterations: int, foreground: float) -> dict[str, str]:
    """Replace ``out`` by empty nnUNet_raw / _preprocessed / _results folders; return the environment that points
    the stock commands at them, with the weak model's :func:`schedule`. This process's environment is left alone."""
    from nnunet_fracture.trainer_discovery import trainer_path

    if out.exists():
        shutil.rmtree(out)
    env = {name: str(out / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for folder in env.values():
        Path(folder).mkdir(parents=True)
    env.update(nnUNet_extTrainer=str(trainer_path()), nnUNet_compile="f", nnUNet_n_proc_DA="2",
               NNUNET_FRACTURE_SETTINGS=schedule(epochs, iterations, foreground))
    return env


def run_demo(out: Path, train_cases: int = 10, test_cases: int = 3, epochs: int = 45, iterations: int = 30,
             foreground: float = 0.66, seed: int = 0, rule: str = "fixed", rounds: int = 0,
             strong_epochs: int = 100, inside_vertebra: float | None = 1.5, dark_lesions: float = 100.0,
             dark_grow: float = 75.0) -> dict:
    """Run the whole demo in ``out`` (replaced if it exists) and return its summary. Without ``inside_vertebra``
    the dark lesions are off (they need the vertebra maps)."""
    from nnunet_fracture.dataset_conversion.generic import read_generic
    from nnunet_fracture.dataset_conversion.phantom import write_phantom
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
    from nnunet_fracture.environment import scoped_environ
    from nnunet_fracture.evaluation.report import evaluate_folder
    from nnunet_fracture.inference.label_options import LabelOptions
    from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks
    from nnunet_fracture.inference.small_components import DEFAULT_FRACTION, clean_by_training_labels
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans
    from nnunet_fracture.self_training import DEFAULT_OPTIONS, self_train

    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if inside_vertebra is None:
        dark_lesions = dark_grow = 0.0
    options = LabelOptions(inside_vertebra=inside_vertebra, dark_lesions=dark_lesions,
                           dark_grow=dark_grow if dark_lesions else 0.0)  # checked before anything runs
    out = out.resolve()
    env = fresh_workspace(out, epochs, iterations, foreground)
    log = out / "demo_log.txt"
    raw = Path(env["nnUNet_raw"])
    steps = Steps(17 if rounds else 9)
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
            write_tiny_plans(str(TRAIN_ID), plans_name=PLANS, max_features=MAX_FEATURES, max_patch=MAX_PATCH)

    steps.run(f"nnunet-fracture tiny-plans --features {MAX_FEATURES} --patch {MAX_PATCH} --plans-name {PLANS}",
              tiny_plans)
    steps.run(f"nnUNetv2_train (stock) -tr {TRAINER}, {epochs} epochs x {iterations} iterations", run_stock,
              ["nnUNetv2_train", TRAIN_ID, "3d_fullres", "all", "-tr", TRAINER, "-p", PLANS, "-device", "cpu"],
              log, env, echo=True)

    def predict(images: Path, folder: Path, dataset_id: int, trainer: str) -> None:
        run_stock(predict_command(images, folder, dataset_id, trainer, PLANS, tta=False), log, env)

    predictions = out / "predictions"
    steps.run("nnUNetv2_predict (stock) on the held-out test cases", predict, test_raw / "imagesTr", predictions,
              TRAIN_ID, TRAINER)
    pseudo = out / "pseudo_masks"
    where = "the test cases' boxes" + ("" if inside_vertebra is None else
                                       f", {inside_vertebra:g} mm inside each boxed vertebra")
    dark = (f", dark lesions {options.dark_lesions:g} HU under the bone's median (grown to {options.dark_grow:g})"
            if options.dark_lesions else "")
    steps.run(f"nnunet-fracture pseudo-masks (rule {rule}, random walker) inside {where}{dark}",
              write_pseudo_masks, [predictions], test_raw, pseudo, rule=rule, refine="random_walker",
              options=options)
    reports, record = {}, None
    if rounds:
        train_predictions = out / "predictions_train"
        steps.run("nnUNetv2_predict (stock) on the training cases: the flywheel's input", predict,
                  train_raw / "imagesTr", train_predictions, TRAIN_ID, TRAINER)

        def flywheel() -> dict:
            strong_env = {**env, "NNUNET_FRACTURE_SETTINGS": schedule(strong_epochs, iterations, foreground)}
            with scoped_environ(strong_env):  # self-train's stock commands read nnU-Net's folders from it
                return self_train([train_predictions], TRAIN_ID, out / "self_training", FLYWHEEL_ID, "DemoFlywheel",
                                  rounds=rounds, plans=PLANS, trainer=STRONG_TRAINER, device="cpu", rule=rule,
                                  options=replace(DEFAULT_OPTIONS, inside_vertebra=inside_vertebra,
                                                  dark_lesions=options.dark_lesions, dark_grow=options.dark_grow),
                                  disable_tta=True)

        record = steps.run(f"nnunet-fracture self-train: {rounds} round(s), {STRONG_TRAINER} on the training "
                           f"cases' pseudo-masks, {strong_epochs} epochs x {iterations} iterations", flywheel)
        strong = out / "predictions_strong"
        steps.run("nnUNetv2_predict (stock) with the strong model on the held-out test cases", predict,
                  test_raw / "imagesTr", strong, FLYWHEEL_ID + rounds - 1, STRONG_TRAINER)
        reports["strong_model"] = steps.run(
            "evaluate: the strong model's probabilities vs ground truth", evaluate_folder, strong,
            test_raw / "groundTruthTr", out / "report" / "strong_model", images=test_raw / "imagesTr")
        last_round = Path(record["rounds"][-1]["dataset"])  # self-train records each round's dataset folder
        cleaned = out / "predictions_strong_cleaned"
        steps.run(f"nnunet-fracture postprocess --dataset {last_round.name}: components under "
                  f"{DEFAULT_FRACTION:g} x the round labels' typical one removed", clean_by_training_labels, strong,
                  cleaned, last_round)
        reports["strong_model_cleaned"] = steps.run(
            "evaluate: the strong model without its specks vs ground truth", evaluate_folder, cleaned,
            test_raw / "groundTruthTr", out / "report" / "strong_model_cleaned", images=test_raw / "imagesTr")
        # the boxes again, on the strong model's P: the pipeline's best pseudo-masks (bench arm flywheel_masks)
        strong_pseudo = out / "pseudo_masks_strong"
        steps.run("nnunet-fracture pseudo-masks on the strong model's probabilities (the same rule and options)",
                  write_pseudo_masks, [strong], test_raw, strong_pseudo, rule=rule, refine="random_walker",
                  options=options)
        reports["strong_pseudo_masks"] = steps.run(
            "evaluate: the strong model's pseudo-masks vs ground truth", evaluate_folder, strong_pseudo / "masks",
            test_raw / "groundTruthTr", out / "report" / "strong_pseudo_masks", images=test_raw / "imagesTr")
    reports["weak_model"] = steps.run(
        "evaluate: the weak model's probabilities vs ground truth (+ overlay PNGs)", evaluate_folder, predictions,
        test_raw / "groundTruthTr", out / "report" / "weak_model", images=test_raw / "imagesTr")
    reports["pseudo_masks"] = steps.run(
        "evaluate: the pseudo-masks vs ground truth", evaluate_folder, pseudo / "masks", test_raw / "groundTruthTr",
        out / "report" / "pseudo_masks", images=test_raw / "imagesTr")
    result = {"reports": reports, "step_seconds": steps.timings,
              "total_seconds": round(sum(steps.timings.values()), 1),
              "self_training": record,
              "settings": {"train_cases": train_cases, "test_cases": test_cases, "epochs": epochs,
                           "iterations": iterations, "foreground": foreground, "seed": seed, "trainer": TRAINER,
                           "strong_trainer": STRONG_TRAINER if rounds else None, "plans": PLANS, "rule": rule,
                           "refine": "random_walker", "inside_vertebra": inside_vertebra,
                           "dark_lesions": options.dark_lesions, "dark_grow": options.dark_grow, "rounds": rounds,
                           "strong_epochs": strong_epochs if rounds else None}}
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2) + "\n")
    print()
    for name, summary in reports.items():
        pooled = summary["pooled"]
        pr_auc = (summary.get("pooled_threshold_free") or {}).get("pr_auc")
        print(f"{name:13s} pooled Dice {pooled['dice']:.3f} (precision {pooled['precision']:.3f}, recall "
              f"{pooled['recall']:.3f}), PR-AUC {'n/a' if pr_auc is None else f'{pr_auc:.3f}'}")
    print(f"Total {result['total_seconds']:.0f} s. Reports: {out / 'report'} ({', '.join(reports)}: metrics.csv, "
          f"summary.json, figures/); pseudo-masks and uncertainty maps: {pseudo}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run_demo(args.out, args.train_cases, args.test_cases, args.epochs, args.iterations, args.foreground, args.seed,
             args.rule, args.rounds, args.strong_epochs,
             None if args.inside_vertebra < 0 else args.inside_vertebra, args.dark_lesions, args.dark_grow)
    return 0


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    sys.exit(main())
