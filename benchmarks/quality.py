"""The quality bench: every method on the same phantom cases, several seeds, one JSON, one table.

    python benchmarks/quality.py --arms core --seeds 0 1 2          # train what is not cached yet, then report
    python benchmarks/quality.py --table                            # the Markdown table from quality.json
    python benchmarks/quality.py --table --update-readme            # ... and the ablation, into the README
    python benchmarks/quality.py --gpu --arms full_mask --seeds 0   # nnU-Net's default plans (a lent GPU)

Arms are declared in ``benchmarks/quality_arms.py`` (trainer + labels + settings). For seed s, every arm trains
on the same phantom training cases (phantom seed s, ``--weak mask|box|slice`` as the arm needs) through the stock
``nnUNetv2_plan_and_preprocess`` / ``nnUNetv2_train ... all`` / ``nnUNetv2_predict`` commands, and is scored on
the same held-out phantom test cases (phantom seed 1000; two of every ten are fracture-free) by
:class:`nnunet_fracture.evaluation.bench_scores.BenchScore`. Weak arms are scored on their pseudo-masks inside
the boxes and on P >= 0.5 over whole volumes.

Each arm x seed result is cached in ``benchmarks/results/quality_runs/<arm>/seed<s>_<key>.json``, where the key
hashes the arm, the regime, the seed and the phantom version: a re-run trains only what changed, and the table
grows across sessions. ``benchmarks/results/quality.json`` is rebuilt from the cache after every run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_ablation import ABLATION, relation  # noqa: E402
from quality_arms import ARM_SETS, ARMS, ROUND_ONLY_FIELDS, Arm, check_arms, run_key  # noqa: E402
from quality_regimes import REGIMES, Regime  # noqa: E402
from quality_results import TEST_ID, phantom_version, write_quality_json  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README_BEGIN, README_END = "<!-- quality-table:begin -->", "<!-- quality-table:end -->"
ABLATION_BEGIN, ABLATION_END = "<!-- ablation-table:begin -->", "<!-- ablation-table:end -->"
LABEL_IDS = {"mask": 0, "box": 1, "slice": 2, "vae_error": 3, "mask_polarity": 4}
SELF_TRAINING_IDS = 750  # round k of seed s: 750 + 10 s + k
STRONG_TRAINER = "nnUNetTrainerFracture"  # the stock-equivalent trainer of the self-training rounds
PREVIOUS_ROUND = "_previous_round"  # suffix of the predictions of a multi-round arm's next-to-last round
#: what a multi-round arm's result keeps of its next-to-last round (``previous_round``)
PREVIOUS_ROUND_KEYS = ("whole_volume_dice", "whole_volume_precision", "whole_volume_recall", "in_box_dice", "pr_auc",
                       "best_f1", "detection_auc", "fp_voxels_per_normal_case", "recall_by_kind", "predictions_id")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=["core"],
                   help=f"arm names or sets ({', '.join(ARM_SETS)}; arms: {', '.join(ARMS)})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--regime", choices=sorted(REGIMES), default="cpu",
                   help="cpu (default): bench plans on a 2-core CPU; gpu: nnU-Net's default plans on cuda; smoke: a "
                        "minutes-long check that the harness runs (numbers meaningless)")
    p.add_argument("--gpu", action="store_true", help="same as --regime gpu")
    p.add_argument("--work", type=Path, default=HERE / "work" / "quality", help="working folder (kept for reuse)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where quality.json and the run cache go")
    p.add_argument("--table", action="store_true", help="only print the table from quality.json (train nothing)")
    p.add_argument("--update-readme", action="store_true",
                   help="write the table and the ablation between the README's markers (cpu regime)")
    p.add_argument("--list", action="store_true", help="print every arm with what it tests, and the sets; run nothing")
    return p


def _arm_names(requested: list[str]) -> list[str]:
    names: list[str] = []
    for item in requested:
        if item not in ARM_SETS and item not in ARMS:
            raise SystemExit(f"unknown arm or set {item!r}; arms: {', '.join(ARMS)}; sets: {', '.join(ARM_SETS)}")
        for name in ARM_SETS.get(item, (item,)):
            if name not in names:
                names.append(name)
    return names


class Workspace:
    """nnU-Net folders, phantoms and datasets of one regime, built lazily and reused across arms and runs."""

    def __init__(self, root: Path, regime_name: str, regime: Regime, results: Path = RESULTS):
        from nnunet_fracture.trainer_discovery import trainer_path

        self.root, self.name, self.regime, self.results = root / regime_name, regime_name, regime, results
        self.env = {name: str(self.root / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
        for folder in self.env.values():
            Path(folder).mkdir(parents=True, exist_ok=True)
        self.env.update(nnUNet_extTrainer=str(trainer_path()), nnUNet_compile="f",
                        nnUNet_n_proc_DA=os.environ.get("nnUNet_n_proc_DA", "2"))
        self.log = self.root / "commands.log"

    def phantom(self, seed: int, cases: int) -> Path:
        from nnunet_fracture.dataset_conversion.phantom import write_phantom

        out = self.root / f"phantom_seed{seed}_{cases}"
        if not (out / "phantom.json").is_file():
            write_phantom(out, n_cases=cases, seed=seed, spacing=self.regime.spacing, contrast=self.regime.contrast,
                          overwrite=True)
        self.check_phantom(out)
        return out

    def check_phantom(self, folder: Path) -> None:
        """Refuse a workspace whose phantom another phantom version, spacing or contrast wrote: its datasets and
        models were built from it, while the results would be cached under today's version."""
        from nnunet_fracture.io.json_files import read_json_object

        found = read_json_object(folder / "phantom.json", f"remove the workspace {self.root} or pass another --work")
        want = {"version": phantom_version(), "spacing": list(self.regime.spacing), "contrast": self.regime.contrast}
        have = {"version": found.get("version"), "spacing": found.get("spacing"),
                "contrast": found.get("settings", {}).get("contrast")}
        if have != want:
            raise SystemExit(f"{folder / 'phantom.json'}: written with {have}, this bench needs {want}; remove the "
                             f"workspace {self.root} (its datasets and models come from that phantom) or pass "
                             f"another --work")

    def raw(self, dataset_id: int) -> Path | None:
        found = sorted(Path(self.env["nnUNet_raw"]).glob(f"Dataset{dataset_id:03d}_*"))
        return found[0] if found else None

    def dataset(self, seed: int, labels: str) -> int:
        """The training dataset of ``seed`` with ``labels`` (mask | box | slice, or mask_polarity: the masks split
        into dense and lucent classes), converted and preprocessed once."""
        from nnunet_fracture.dataset_conversion.generic import read_generic
        from nnunet_fracture.dataset_conversion.polarity_classes import write_polarity_dataset
        from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

        dataset_id = 700 + 10 * seed + LABEL_IDS[labels]
        if self.raw(dataset_id) is None:
            if labels == "mask_polarity":
                write_polarity_dataset(self.raw(self.dataset(seed, "mask")), dataset_id,
                                       f"QualityS{seed}MaskPolarity", Path(self.env["nnUNet_raw"]))
            else:
                write_raw_dataset(read_generic(self.phantom(seed, self.regime.train_cases)), dataset_id,
                                  f"QualityS{seed}{labels.capitalize()}", weak=labels,
                                  raw_root=Path(self.env["nnUNet_raw"]))
        self.preprocess(dataset_id)
        return dataset_id

    def training_labels(self, arm: Arm, seed: int) -> Path:
        """The raw dataset whose masks trained ``arm``'s model for ``seed`` (that of the arm whose predictions it
        reuses): the true masks, or the last self-training round's labels (checked to be this recipe's round)."""
        source = ARMS[arm.predictions_of] if arm.predictions_of else arm
        if source.self_training_rounds:
            key, first = self.rounds_key(source, seed), self.first_round_id(seed)
            found = self.raw(first + source.self_training_rounds - 1)
            if found is None or not found.name.endswith(f"Fw{key}R{source.self_training_rounds}"):
                raise ValueError(f"seed {seed}: the round dataset {found} is not this recipe's (Fw{key}); run the "
                                 f"source arm again so that its round labels are there")
            return found
        return self.raw(self.dataset(seed, "mask"))

    def rounds_key(self, arm: Arm, seed: int) -> str:
        """The run key of ``arm``'s first self-training round: it names the rounds' folder and datasets, shared by
        arms that differ only in their number of rounds."""
        return run_key(replace(arm, self_training_rounds=1, note=""), self.regime, seed, phantom_version())

    @staticmethod
    def first_round_id(seed: int) -> int:
        """The dataset ID of ``seed``'s first self-training round (round k: this + k - 1)."""
        return SELF_TRAINING_IDS + 10 * seed + 1

    def preprocess(self, dataset_id: int) -> None:
        from nnunet_fracture.environment import scoped_environ
        from nnunet_fracture.planning.tiny_plans import write_tiny_plans
        from nnunet_fracture.stock_commands import run_stock

        folder = Path(self.env["nnUNet_preprocessed"]) / self.raw(dataset_id).name
        if not (folder / "nnUNetPlans.json").is_file() or not any(folder.glob("nnUNetPlans_3d_fullres/*")):
            run_stock(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", "3d_fullres", "-np", "2",
                       "--verify_dataset_integrity"], self.log, {**self.env, "nnUNet_n_proc_DA": "1"})
        r = self.regime
        if r.plans != "nnUNetPlans":  # always rewritten: a changed regime must not train on stale plans
            with scoped_environ(self.env):
                write_tiny_plans(str(dataset_id), plans_name=r.plans, max_features=r.max_features,
                                 max_patch=r.max_patch, batch_size=r.batch_size)

    def test_dataset(self) -> Path:
        from nnunet_fracture.dataset_conversion.generic import read_generic
        from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

        if self.raw(TEST_ID) is None:
            write_raw_dataset(read_generic(self.phantom(self.regime.test_seed, self.regime.test_cases)), TEST_ID,
                              "QualityTest", weak="box", raw_root=Path(self.env["nnUNet_raw"]))
        return self.raw(TEST_ID)

    def train(self, dataset_id: int, trainer: str, settings: str) -> Path:
        """``nnUNetv2_train DATASET 3d_fullres all -tr TRAINER`` with the regime's schedule; the model folder.

        A finished model of the same dataset, trainer, plans and settings in this workspace is reused (its settings
        are recorded next to the checkpoint after training): arms that share a model, such as a refinement arm and
        the self-training arm of the same recipe, train it once per session."""
        from nnunet_fracture.stock_commands import run_stock

        r = self.regime
        model = Path(self.env["nnUNet_results"]) / self.raw(dataset_id).name / f"{trainer}__{r.plans}__3d_fullres"
        settings = r.settings_with(settings)
        record = model / "fold_all" / "bench_settings.txt"
        if (model / "fold_all" / "checkpoint_final.pth").is_file() and record.is_file() \
                and record.read_text(encoding="utf-8") == settings:
            print(f"[reuse] {model.name} of dataset {dataset_id}, trained with the same settings", flush=True)
            return model
        record.unlink(missing_ok=True)
        run_stock(["nnUNetv2_train", dataset_id, "3d_fullres", "all", "-tr", trainer, "-p", r.plans,
                   "-device", r.device], self.log, {**self.env, "NNUNET_FRACTURE_SETTINGS": settings}, echo=True)
        record.write_text(settings, encoding="utf-8")
        return model

    def error_channel(self, seed: int, arm: Arm) -> tuple[int, Path]:
        """The VAE error-map dataset of ``seed`` and the test images with their error channel (VAE trained once)."""
        from nnunet_fracture.environment import scoped_environ
        from nnunet_fracture.inference.vae_error import write_error_dataset, write_error_images

        box_id, e_id = self.dataset(seed, "box"), 700 + 10 * seed + LABEL_IDS["vae_error"]
        vae = (Path(self.env["nnUNet_results"]) / self.raw(box_id).name
               / f"nnUNetTrainerNormalVAE__{self.regime.plans}__3d_fullres")
        if not (vae / "fold_all" / "checkpoint_final.pth").is_file():
            self.train(box_id, "nnUNetTrainerNormalVAE", arm.channel_settings)
        if self.raw(e_id) is None:
            with scoped_environ(self.env):
                write_error_dataset(box_id, e_id, vae, name=f"QualityS{seed}VaeError", folds=["all"])
        self.preprocess(e_id)
        images = self.root / f"test_images_vae_error_seed{seed}"
        if not images.is_dir():
            with scoped_environ(self.env):
                write_error_images(self.test_dataset() / "imagesTr", images, vae, scale_from=e_id, folds=["all"])
        return e_id, images

    def train_and_predict(self, arm_name: str, arm: Arm, seed: int) -> Path:
        """Train ``arm`` on fold ``all`` of its dataset for ``seed`` and predict the test cases; the predictions."""
        if arm.channel not in (None, "vae_error"):
            raise ValueError(f"arm {arm_name}: unknown input channel {arm.channel!r}")
        if arm.channel == "vae_error":
            dataset_id, images = self.error_channel(seed, arm)
        else:
            dataset_id, images = self.dataset(seed, arm.labels), self.test_dataset() / "imagesTr"
        trainer = arm.trainer
        if arm.self_training_rounds:  # trains the weak model only if its predictions are not cached
            dataset_id, trainer = self.self_training(arm, seed, dataset_id), arm.strong_trainer or STRONG_TRAINER
            if arm.self_training_rounds > 1:  # the round before, of the same run: what the last round adds
                self.predict(images, self.predictions(arm_name, seed, PREVIOUS_ROUND), dataset_id - 1, trainer)
        else:
            self.train(dataset_id, arm.trainer, arm.settings)
        return self.predict(images, self.predictions(arm_name, seed), dataset_id, trainer, arm.mirroring)

    def predictions(self, arm_name: str, seed: int, suffix: str = "") -> Path:
        """The folder of ``arm_name``'s predictions for ``seed``, named with the arm's run key: a renamed or
        changed recipe never finds another recipe's predictions."""
        key = run_key(ARMS[arm_name], self.regime, seed, phantom_version())
        return self.root / "predictions" / f"{arm_name}_seed{seed}_{key}{suffix}"

    def predict(self, images: Path, out: Path, dataset_id: int, trainer: str, mirroring: bool | None = None) -> Path:
        """``nnUNetv2_predict`` of fold ``all`` with probabilities, mirrored at test time as the regime says unless
        ``mirroring`` is given; ``out``."""
        from nnunet_fracture.stock_commands import predict_command, run_stock

        r = self.regime
        tta = r.tta if mirroring is None else mirroring
        run_stock(predict_command(images, out, dataset_id, trainer, r.plans, device=r.device, tta=tta),
                  self.log, self.env)
        return out

    def self_training(self, arm: Arm, seed: int, weak_id: int) -> int:
        """The weak model (trained first unless this recipe's predictions are cached) predicts its own training
        images, then ``nnunet-fracture self-train --resume`` runs the arm's rounds with its ``strong_trainer``
        (:data:`STRONG_TRAINER` if unset) on the regime's schedule; the dataset ID of the last round.

        Arms that differ only in their number of rounds share one self-training folder (named by the run key of the
        recipe's first round), so a 2-round arm continues a 1-round arm's run instead of training round 1 again."""
        from nnunet_fracture.environment import scoped_environ
        from nnunet_fracture.self_training import self_train

        r = self.regime
        key = self.rounds_key(arm, seed)
        # the weak model's predictions do not depend on how the rounds label and train, so arms that differ only
        # there share them
        weak_key = run_key(replace(arm, self_training_rounds=1, note="", **dict.fromkeys(ROUND_ONLY_FIELDS)), r, seed,
                           phantom_version())
        weak = self.root / "predictions" / f"self_training_seed{seed}_{weak_key}_train"
        if not weak.is_dir():  # predicted whole or not at all: a resumed run checks only the folder's name
            self.train(weak_id, arm.trainer, arm.settings)
            staged = self.predict(self.raw(weak_id) / "imagesTr", weak.with_name(f".{weak.name}.partial"), weak_id,
                                  arm.trainer)
            os.replace(staged, weak)
        first, out = self.first_round_id(seed), self.root / "self_training" / f"seed{seed}_{key}"
        run = partial(self_train, [weak], weak_id, out, first_id=first, name=f"QualityS{seed}Fw{key}",
                      rounds=arm.self_training_rounds, plans=r.plans, trainer=arm.strong_trainer or STRONG_TRAINER,
                      device=r.device,
                      rule=arm.pseudo_masks or "fixed", refine=arm.refine or "none",
                      options=arm.label_options(ignores=True),
                      disable_tta=not r.tta)
        with scoped_environ({**self.env, "NNUNET_FRACTURE_SETTINGS": r.schedule()}):
            # the round IDs belong to the seed, not the recipe: another recipe's datasets there are replaced
            if (out / "self_training.json").is_file():
                try:
                    run(resume=True, overwrite=True)
                except ValueError as refused:  # e.g. a round's dataset was replaced by another recipe's since
                    print(f"[self-training] starting over: {refused}", flush=True)
                    run(overwrite=True)
            else:
                run(overwrite=True)
        return first + arm.self_training_rounds - 1


def run_arm(ws: Workspace, arm_name: str, seed: int) -> dict:
    """Train (unless a reference), predict and score one arm x seed; the result entry for quality.json."""
    from quality_scoring import clean_masks, score_predictions, score_reference

    arm, r = ARMS[arm_name], ws.regime
    start = time.perf_counter()
    test, test_phantom = ws.test_dataset(), ws.phantom(r.test_seed, r.test_cases)
    if arm.reference is not None:
        scores = score_reference(arm.reference, test, test_phantom, ws.raw(ws.dataset(seed, "box")),
                                 ws.phantom(seed, r.train_cases), arm.inside_vertebra)
    else:
        # a self-trained model is a fully supervised one: scored on its own masks, in the boxes too (unless the
        # arm scores the pseudo-masks its P gives)
        rule = None if arm.self_training_rounds and not arm.round_pseudo_masks else arm.pseudo_masks
        if arm.predictions_of is None:
            predictions = ws.train_and_predict(arm_name, arm, seed)
        else:  # the source arm's model (trained again if this workspace lacks it: check_arms keeps it the same)
            predictions = ws.predictions(arm.predictions_of, seed)
            if not predictions.is_dir():
                predictions = ws.train_and_predict(arm.predictions_of, ARMS[arm.predictions_of], seed)
        pseudo_out = ws.root / "pseudo_masks" / f"{arm_name}_seed{seed}"
        options = arm.label_options(ignores=False)
        masks, removal = None, {}
        if arm.min_component:  # specks removed from the segmentations; probabilities (PR-AUC) stay
            masks = ws.root / "postprocessed" / f"{arm_name}_seed{seed}"
            removal = clean_masks(predictions, masks, ws.training_labels(arm, seed), arm.min_component)
        scores = score_predictions(predictions, test, test_phantom, rule, pseudo_out, arm.refine, options, masks)
        scores.update(removal)
        if rule is not None and arm.refine not in (None, "none"):  # the same model's masks before refinement
            plain = score_predictions(predictions, test, test_phantom, rule, pseudo_out.with_name(
                pseudo_out.name + "_unrefined"), options=options)
            scores["before_refinement"] = {k: plain[k] for k in ("in_box_dice", "in_box_precision", "in_box_recall")}
        previous = ws.predictions(arm_name, seed, PREVIOUS_ROUND)
        if (arm.self_training_rounds or 0) > 1 and previous.is_dir():  # predicted by this run (train_and_predict)
            before = score_predictions(previous, test, test_phantom, None, pseudo_out)
            scores["previous_round"] = {k: before.get(k) for k in PREVIOUS_ROUND_KEYS}
    return {**scores, "seconds": round(time.perf_counter() - start, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}


def main(argv: list[str] | None = None) -> int:
    from quality_table import ablation_table, markdown_table, update_readme

    args = _parser().parse_args(argv)
    if args.list:
        for name, arm in ARMS.items():
            print(f"{name}: {arm.note}")
        for set_name, names in ARM_SETS.items():
            if set_name != "all":
                print(f"set {set_name}: {' '.join(names)}")
        return 0
    regime_name = "gpu" if args.gpu else args.regime
    regime = REGIMES[regime_name]
    if args.update_readme and regime_name != "cpu":
        raise SystemExit(f"--update-readme writes the cpu regime's tables; the {regime_name} regime's table is printed "
                         f"and kept in {args.results / f'quality_{regime_name}.json'}, not written to the README")
    if not args.table:
        check_arms()
        ws, version = Workspace(args.work.resolve(), regime_name, regime, args.results), phantom_version()
        for seed in args.seeds:
            for arm_name in _arm_names(args.arms):
                key = run_key(ARMS[arm_name], regime, seed, version)
                cache = args.results / "quality_runs" / regime_name / arm_name / f"seed{seed}_{key}.json"
                if cache.is_file():
                    print(f"[cached] {arm_name} seed {seed}: {cache.name}", flush=True)
                    continue
                print(f"[run] {arm_name} seed {seed} ...", flush=True)
                entry = run_arm(ws, arm_name, seed)
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
                print(f"[done] {arm_name} seed {seed} in {entry['seconds']:.0f} s: whole-volume Dice "
                      f"{entry['whole_volume_dice']}, in-box Dice {entry['in_box_dice']}", flush=True)
                write_quality_json(args.results, regime_name, regime, args.work)
    path = write_quality_json(args.results, regime_name, regime, args.work)
    data = json.loads(path.read_text(encoding="utf-8"))
    table, ablation = markdown_table(data), ablation_table(data, ABLATION, relation)
    print(table, ablation, sep="\n\n")
    if args.update_readme:
        update_readme(HERE.parent / "README.md", table, README_BEGIN, README_END)
        update_readme(HERE.parent / "README.md", ablation, ABLATION_BEGIN, ABLATION_END)
        print(f"updated the tables in {HERE.parent / 'README.md'}")
    return 0


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    sys.exit(main())
