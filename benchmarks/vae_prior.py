"""Does the VAE anomaly prior help? Weak-box pseudo-masks with and without the VAE error channel, on phantoms.

    python benchmarks/vae_prior.py [--out benchmarks/work/vae_prior] [--quick]

Pipeline (every training, planning and prediction through the stock ``nnUNetv2_*`` commands):

1. phantoms (training and held-out test cases, different seeds) -> ``convert --weak box``;
2. ``nnUNetv2_train -tr nnUNetTrainerNormalVAE`` (fold ``all``) on the training dataset's CT, normal tissue only;
3. ``nnunet-fracture vae-error``: the training dataset gets the error channel ``_0001`` (scale from its normal
   tissue); the test images get it with the training dataset's recorded scale (``--images --scale-from``);
4. ``nnUNetTrainerWeakBBox`` twice with the same plans, schedule and sampling: on CT alone, and on CT + E with
   the consistency loss L4 (``lambda_consistency``, default 0.1);
5. ``nnUNetv2_predict`` on the test cases, ``pseudo-masks`` (every rule) inside the test boxes.

Reported, pooled over the test cases against their ground-truth fracture masks: the voxel PR-AUC of E alone (all
voxels, and inside the boxes), and for both weak arms the pseudo-mask Dice (each rule) and the model's PR-AUC
inside the boxes. The goal is a Dice gain of at least +0.03 with the channel; the script says plainly whether it
is met. Error-map figures (CT, E, ground truth and box on the slice through each test case's largest fracture)
go to ``benchmarks/results/vae_prior_figures/``. Prints a table and writes ``benchmarks/results/vae_prior.json``.

The default is sized for a 2-core CPU (tiny plans, 1.5 mm phantoms, weak arms 50 x 40 iterations as in
``weak_vs_full.py``, VAE 40 x 25); ``--quick`` is a smoke run of a few minutes (coarse phantoms, a few
iterations; its numbers mean nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import weak_vs_full as wvf  # noqa: E402  (the shared planning, training, prediction and scoring helpers)

TRAIN_ID, TEST_ID, TRAIN_E_ID = 960, 961, 962
VAE_TRAINER, WEAK_TRAINER = "nnUNetTrainerNormalVAE", "nnUNetTrainerWeakBBox"
RULES = wvf.RULES
GOAL_DICE_GAIN = 0.03

CPU = dict(train_cases=10, test_cases=4, spacing=None, epochs=50, iterations=40, vae_epochs=40, vae_iterations=25,
           plans="nnUNetPlansTiny", device="cpu", tta=False)
QUICK = dict(train_cases=5, test_cases=2, spacing=[3.0, 3.0, 3.0], epochs=2, iterations=4, vae_epochs=2,
             vae_iterations=4, plans="nnUNetPlansTiny", device="cpu", tta=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/work/vae_prior"),
                   help="working folder, replaced (default benchmarks/work/vae_prior)")
    p.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="where JSON and figures go")
    p.add_argument("--quick", action="store_true", help="smoke run: coarse phantoms, a few iterations")
    p.add_argument("--epochs", type=int, default=None, help="override the weak arms' epochs")
    p.add_argument("--iterations", type=int, default=None, help="override the weak arms' iterations per epoch")
    p.add_argument("--vae-epochs", type=int, default=None, help="override the VAE's epochs")
    p.add_argument("--vae-iterations", type=int, default=None, help="override the VAE's iterations per epoch")
    p.add_argument("--vae-settings", default=None,
                   help="extra NNUNET_FRACTURE_SETTINGS of the VAE trainer (default 'vae_beta=0.1 "
                        "vae_beta_warmup_epochs=5 vae_box_margin=4'; --quick: margin 2)")
    p.add_argument("--lambda-consistency", type=float, default=0.1,
                   help="weight of L4 |P - E| in the arm with the channel (0: the channel as input only)")
    p.add_argument("--percentile", type=float, default=99.0, help="vae-error --percentile (default 99)")
    p.add_argument("--foreground", type=float, default=0.66, help="share of patches centred in boxes (both arms)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="suffix of the result file name")
    return p


def _train_vae(cfg: dict, log: Path, vae_settings: str) -> Path:
    from nnunet_fracture.stock_commands import run_stock

    settings = (f"num_epochs={cfg['vae_epochs']} num_iterations_per_epoch={cfg['vae_iterations']} "
                f"num_val_iterations_per_epoch=2 {vae_settings}").strip()
    run_stock(["nnUNetv2_train", TRAIN_ID, "3d_fullres", "all", "-tr", VAE_TRAINER, "-p", cfg["plans"],
               "-device", cfg["device"]], log, env={"NNUNET_FRACTURE_SETTINGS": settings}, echo=True)
    model = Path(os.environ["nnUNet_results"]) / f"Dataset{TRAIN_ID}_VpTrain" / \
        f"{VAE_TRAINER}__{cfg['plans']}__3d_fullres"
    return model


def _test_images_with_e(test_raw: Path, model: Path, out: Path) -> Path:
    from nnunet_fracture.inference.vae_error import write_error_images

    write_error_images(test_raw / "imagesTr", out, model, scale_from=TRAIN_E_ID, overwrite=True)
    return out


def run(out: Path, cfg: dict, args: argparse.Namespace) -> dict:
    from nnunet_fracture.dataset_conversion.generic import read_generic
    from nnunet_fracture.dataset_conversion.phantom import write_phantom
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
    from nnunet_fracture.demo import Steps, fresh_workspace
    from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks
    from nnunet_fracture.inference.vae_error import write_error_dataset

    out = out.resolve()
    env = fresh_workspace(out, cfg["epochs"], cfg["iterations"], args.foreground)
    raw, log, steps = Path(env["nnUNet_raw"]), out / "commands.log", Steps()
    steps.run("phantoms", lambda: (
        write_phantom(out / "phantom_train", n_cases=cfg["train_cases"], seed=args.seed, spacing=cfg["spacing"]),
        write_phantom(out / "phantom_test", n_cases=cfg["test_cases"], seed=args.seed + 1000,
                      spacing=cfg["spacing"])))
    train_raw, test_raw = steps.run("convert --weak box (training, test)", lambda: (
        write_raw_dataset(read_generic(out / "phantom_train"), TRAIN_ID, "VpTrain", weak="box", raw_root=raw),
        write_raw_dataset(read_generic(out / "phantom_test"), TEST_ID, "VpTest", weak="box", raw_root=raw)))
    steps.run("plan + preprocess: CT only", wvf._plan, TRAIN_ID, cfg, log)
    model = steps.run(f"train the VAE ({VAE_TRAINER}, fold all, normal tissue only)", _train_vae, cfg, log,
                      args.vae_settings)
    train_e_raw = steps.run("vae-error: training dataset -> channel _0001", lambda: write_error_dataset(
        TRAIN_ID, TRAIN_E_ID, model, name="VpTrainVAE", percentile=args.percentile))
    test_images = steps.run("vae-error --images: test cases, training scale", _test_images_with_e, test_raw, model,
                            out / "test_images_with_e")
    steps.run("plan + preprocess: CT + E", wvf._plan, TRAIN_E_ID, cfg, log)
    steps.run(f"train weak, CT only ({WEAK_TRAINER})", wvf._train, TRAIN_ID, WEAK_TRAINER, cfg, log)
    steps.run(f"train weak, CT + E, lambda_consistency={args.lambda_consistency}", wvf._train, TRAIN_E_ID,
              WEAK_TRAINER, cfg, log, f"lambda_consistency={args.lambda_consistency}")
    pred = {"ct": out / "pred_ct", "ct_e": out / "pred_ct_e"}
    steps.run("predict test: CT only", wvf._predict, WEAK_TRAINER, TRAIN_ID, test_raw / "imagesTr", pred["ct"], cfg,
              log)
    steps.run("predict test: CT + E", wvf._predict, WEAK_TRAINER, TRAIN_E_ID, test_images, pred["ct_e"], cfg, log)
    for arm in pred:
        for rule in RULES:
            steps.run(f"pseudo-masks test ({arm}, {rule})", write_pseudo_masks, [pred[arm]], test_raw,
                      out / f"pseudo_{arm}_{rule}", rule=rule)
    result = score(out, test_raw, test_images, pred)
    result["vae_error"] = json.loads((train_e_raw / "dataset.json").read_text())["nnunet_fracture"]["vae_error"]
    result["vae_final_validation"] = _vae_validation(model)
    result.update(step_seconds=steps.timings, total_seconds=round(sum(steps.timings.values()), 1))
    return result


def _vae_validation(model: Path) -> dict | None:
    summary = model / "fold_all" / "validation" / "vae_summary.json"
    return json.loads(summary.read_text())["pooled"] if summary.is_file() else None


def score(out: Path, test_raw: Path, test_images: Path, pred: dict) -> dict:
    """Pool the scores over the test cases."""
    from nnunet_fracture.evaluation.threshold_curves import ScoreHistogram
    from nnunet_fracture.inference.probability_files import load_fracture_probability

    e_all, e_box = ScoreHistogram(), ScoreHistogram()
    arms = {f"{arm}_{rule}": wvf.Score() for arm in pred for rule in RULES}
    cases = []
    for gt_file in sorted((test_raw / "groundTruthTr").glob("*.nii.gz")):
        case = gt_file.name[: -len(".nii.gz")]
        gt = wvf._read(gt_file) > 0
        in_box = wvf._read(test_raw / "labelsTr" / gt_file.name) > 0
        e = wvf._read(test_images / f"{case}_0001.nii.gz").astype(np.float32)
        e_all.add(e, gt)
        e_box.add(e * in_box, gt)
        for arm in pred:
            p = load_fracture_probability(pred[arm] / f"{case}.npz", case, gt.shape)
            for rule in RULES:
                mask = wvf._read(out / f"pseudo_{arm}_{rule}" / "masks" / gt_file.name)
                arms[f"{arm}_{rule}"].add(mask, gt, p * in_box)
        cases.append(case)
    scores = {name: s.as_dict() for name, s in arms.items()}
    best = {arm: max(RULES, key=lambda r: scores[f"{arm}_{r}"]["dice"]) for arm in pred}
    gain_fraction = scores["ct_e_fraction"]["dice"] - scores["ct_fraction"]["dice"]
    gain_best = scores[f"ct_e_{best['ct_e']}"]["dice"] - scores[f"ct_{best['ct']}"]["dice"]
    positives = sum(int((wvf._read(test_raw / "groundTruthTr" / f"{c}.nii.gz") > 0).sum()) for c in cases)
    return {
        "cases": cases,
        "error_channel": {"pr_auc_all_voxels": e_all.average_precision(),
                          "pr_auc_inside_boxes": e_box.average_precision(),
                          "best_f1_all_voxels": e_all.best_threshold().f1, "fracture_voxels": positives},
        "scores": scores,
        "best_rule": best,
        "dice_gain_fraction_rule": gain_fraction,
        "dice_gain_best_rules": gain_best,
        "goal": f"dice gain >= +{GOAL_DICE_GAIN}",
        "goal_met": bool(max(gain_fraction, gain_best) >= GOAL_DICE_GAIN),
    }


def figures(out: Path, test_raw: Path, test_images: Path, target: Path) -> list[str]:
    """One PNG per test case: CT, E, and E with the ground truth (lime) and box (yellow) outlined, on the sagittal
    slice through the case's largest fracture (the middle slice of fracture-free cases)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target.mkdir(parents=True, exist_ok=True)
    written = []
    for ct_file in sorted((test_images).glob("*_0000.nii.gz")):
        case = ct_file.name[: -len("_0000.nii.gz")]
        ct = wvf._read(ct_file).astype(np.float32)
        e = wvf._read(test_images / f"{case}_0001.nii.gz")
        gt = wvf._read(test_raw / "groundTruthTr" / f"{case}.nii.gz") > 0 \
            if (test_raw / "groundTruthTr" / f"{case}.nii.gz").is_file() else np.zeros(ct.shape, bool)
        box = wvf._read(test_raw / "labelsTr" / f"{case}.nii.gz") > 0
        x = int(np.argmax(gt.sum(axis=(0, 1)))) if gt.any() else ct.shape[2] // 2
        fig, axes = plt.subplots(1, 3, figsize=(10, 4))
        axes[0].imshow(ct[::-1, :, x], cmap="gray", vmin=-200, vmax=1200)
        axes[0].set_title(f"{case} CT (x = {x})")
        axes[1].imshow(e[::-1, :, x], cmap="magma", vmin=0, vmax=1)
        axes[1].set_title("E (VAE error, normalised)")
        axes[2].imshow(e[::-1, :, x], cmap="magma", vmin=0, vmax=1)
        if gt[:, :, x].any():
            axes[2].contour(gt[::-1, :, x], levels=[0.5], colors="lime", linewidths=0.8)
        if box[:, :, x].any():
            axes[2].contour(box[::-1, :, x], levels=[0.5], colors="yellow", linewidths=0.8)
        axes[2].set_title("E, ground truth (lime), box (yellow)")
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        path = target / f"{case}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path))
    return written


def _table(result: dict) -> str:
    e = result["error_channel"]
    rows = [f"E alone: voxel PR-AUC {e['pr_auc_all_voxels']:.3f} (all voxels), {e['pr_auc_inside_boxes']:.3f} (inside "
            f"boxes); best F1 {e['best_f1_all_voxels']:.3f}",
            f"{'arm':<22}{'Dice':>7}{'IoU':>7}{'prec':>7}{'recall':>7}{'PR-AUC':>8}"]
    for name, s in result["scores"].items():
        label = name.replace("ct_e_", "CT+E  ").replace("ct_", "CT    ")
        rows.append(f"{label:<22}{s['dice']:7.3f}{s['iou']:7.3f}{s['precision']:7.3f}{s['recall']:7.3f}"
                    f"{s['pr_auc']:8.3f}")
    verdict = "met" if result["goal_met"] else "NOT met"
    rows.append(f"Dice gain with the VAE channel: {result['dice_gain_fraction_rule']:+.3f} (fraction rule), "
                f"{result['dice_gain_best_rules']:+.3f} (best rule of each arm); goal >= +{GOAL_DICE_GAIN}: {verdict}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = dict(QUICK if args.quick else CPU)
    if args.vae_settings is None:
        args.vae_settings = f"vae_beta=0.1 vae_beta_warmup_epochs=5 vae_box_margin={2 if args.quick else 4}"
    cfg.update({k: v for k, v in (("epochs", args.epochs), ("iterations", args.iterations),
                                  ("vae_epochs", args.vae_epochs), ("vae_iterations", args.vae_iterations))
                if v is not None})
    result = run(args.out, cfg, args)
    out = args.out.resolve()
    name = f"vae_prior{'_quick' if args.quick else ''}{args.tag}"
    result["figures"] = figures(out, out / "nnUNet_raw" / f"Dataset{TEST_ID}_VpTest", out / "test_images_with_e",
                                args.results / f"{name}_figures")
    result["settings"] = {**cfg, "lambda_consistency": args.lambda_consistency, "percentile": args.percentile,
                          "vae_settings": args.vae_settings, "foreground": args.foreground, "seed": args.seed,
                          "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"}
    print(_table(result))
    if not result["goal_met"]:
        print(f"The VAE channel did not add +{GOAL_DICE_GAIN} Dice here. Error-map figures: "
              f"{args.results / (name + '_figures')}")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.results / (name + '.json')} ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    sys.exit(main())
