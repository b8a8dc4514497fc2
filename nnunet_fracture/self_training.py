"""Self-training rounds: the flywheel from boxes to a fully supervised model, through the stock nnU-Net commands.

Round ``r`` (1..N) takes probabilities predicted on the box dataset's own training images - the weak model's for
round 1, the previous round's model's after that - and

1. writes pseudo-masks inside the boxes (:func:`~nnunet_fracture.inference.pseudo_masks.write_pseudo_masks`, with
   the chosen rule and refinement) and exports them as a new raw dataset ``first_id + r - 1``, the uncertain box
   voxels (``ignore_band``, with ``ignore_ring`` the masks' outer voxels, with ``ignore_unsure`` the least
   confident share of boxes whole) labelled nnU-Net's ``ignore``;
2. gives it the box dataset's plans (``nnUNetv2_extract_fingerprint``, ``nnUNetv2_move_plans_between_datasets``,
   ``nnUNetv2_preprocess``), so every round trains with the same patch, spacing and network;
3. trains ``trainer`` on it (``nnUNetv2_train``; by default ``nnUNetTrainerPresentDice``, nnU-Net's Dice + CE
   without the Dice reward for predicting nothing on a patch without foreground, which let rounds on sparse labels
   collapse) and, when another round
   follows, predicts the box dataset's images with ``--save_probabilities`` (``nnUNetv2_predict``): that round's
   input. The last round's model (the strong model) does not predict them: nobody needs them unless a later
   ``resume`` adds rounds, and then it predicts them first.

Simple Does It (Khoreva et al., CVPR 2017) and BoxTeacher (Cheng et al., CVPR 2023) use such rounds to get within
a few percent of full supervision. Each round's numbers - boxes kept, refined, reset, empty and ignored as unsure,
and, where the box dataset has ``groundTruthTr`` (the phantom), the pseudo-masks' Dice inside the boxes - go to
``<out>/self_training.json`` as soon as the round is done, with the commands' log in ``<out>/commands.log``.
The model of the last round is the strong model.

``resume`` continues an interrupted or shorter run in the same ``out``: rounds recorded as finished are kept (their
datasets, models and predictions are not touched), an unfinished round is redone from its start, and ``rounds``
may exceed the recorded ones to add rounds. It refuses a record made with other inputs or settings. With
``overwrite`` too, what stands at the dataset IDs of the rounds still to run is replaced.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.dataset_conversion.dataset_folders import stale_derived_folders
from nnunet_fracture.environment import nnunet_folder
from nnunet_fracture.inference.label_options import LabelOptions
from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks
from nnunet_fracture.dataset_conversion.source_dataset import SourceDataset
from nnunet_fracture.io.output_folders import check_output_folder
from nnunet_fracture.stock_commands import predict_command, run_stock
from nnunet_fracture.training.training_log import collapse_summary

#: the rounds' default label options: box voxels left out of a mask with 0.2 <= P < 0.5 are 'ignore'
DEFAULT_OPTIONS = LabelOptions(ignore_band=(0.2, 0.5))

RECORD = "self_training.json"


def in_box_dice(masks: Path, source: SourceDataset, left_out: Optional[Sequence[dict]] = None) -> Optional[float]:
    """Pooled Dice of the pseudo-masks in ``masks`` against the source's ``groundTruthTr`` inside the boxes, or
    ``None`` when the source has no ground truth (real data) or no box is scored.

    Args:
        left_out: boxes not scored, as ``{"case": ..., "box_id": ...}`` (e.g. the unsure boxes a round ignores).
    """
    truth_folder = source.folder / "groundTruthTr"
    if not truth_folder.is_dir():
        return None
    overlap = total = 0
    for mask_file in sorted(masks.glob(f"*{source.file_ending}")):
        case = mask_file.name[: -len(source.file_ending)]
        truth_file = truth_folder / mask_file.name
        if not truth_file.is_file():
            continue
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_file))) > 0
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(truth_file))) > 0
        skip = {int(b["box_id"]) for b in left_out or () if b["case"] == case}
        inside = np.zeros(mask.shape, dtype=bool)
        for entry in source.case_boxes(case, mask.shape[::-1]):
            if entry.box_id not in skip:
                inside[entry.region] = True
        overlap += int(np.count_nonzero(mask & truth & inside))
        total += int(np.count_nonzero(mask & inside)) + int(np.count_nonzero(truth & inside))
    return 2 * overlap / total if total else None


def _write_record(out: Path, record: dict) -> None:
    staged = out / f".{RECORD}.partial"
    staged.write_text(json.dumps(record, indent=2))
    os.replace(staged, out / RECORD)


def _resumed_record(out: Path, fresh: dict) -> dict:
    """The record in ``out`` with its finished rounds, after checking it was made with ``fresh``'s inputs, settings,
    first dataset ID and name, and that each finished round's dataset and predictions are still there."""
    path = out / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        finished = [(int(entry["round"]), Path(entry["dataset"])) for entry in record["rounds"]]
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path} cannot be read as a self-training record ({error!r}). Fix: pass --overwrite "
                         f"without --resume to start over.") from None
    for key in ("box_dataset", "weak_predictions", "settings", "first_id", "name"):
        if key in record and record[key] != fresh[key]:  # records written before 2026-12-05 lack first_id and name
            raise ValueError(f"--resume: {path} was made with {key} {record[key]!r}, not {fresh[key]!r}. Fix: rerun "
                             f"with the recorded {key}, or pass --overwrite without --resume to start over.")
    for r, dataset in finished:
        expected = f"Dataset{fresh['first_id'] + r - 1:03d}_"
        if not dataset.name.startswith(expected):
            raise ValueError(f"--resume: round {r} in {path} used {dataset.name}, not an ID {expected[7:-1]} from "
                             f"--first-id {fresh['first_id']}. Fix: pass the recorded first ID.")
        if not dataset.is_dir():
            raise ValueError(f"--resume: round {r}'s dataset {dataset} is gone. Fix: pass --overwrite without "
                             f"--resume to start over.")
    for entry in record["rounds"]:  # a round recorded without predictions is the last one; it predicts on demand
        if _predicted(entry) and not (out / f"round{entry['round']}" / "predictions").is_dir():
            raise ValueError(f"--resume: round {entry['round']}'s predictions in {out} are gone. Fix: pass "
                             f"--overwrite without --resume to start over.")
    return record


def _predicted(entry: dict) -> bool:
    """Whether a recorded round's model predicted the training images (records before 2026-12-05 have no
    ``predictions`` key: every round predicted them then)."""
    return entry.get("predictions", "legacy") is not None


def _collapse_message(r: int, model: str) -> str:
    return (f"round {r}'s model ({model}) collapsed: its pseudo Dice was 0 on every validation patch of its last "
            f"epochs, so it marks no fracture anywhere. Fix: train the rounds with --trainer nnUNetTrainerPresentDice "
            f"(the default: no Dice reward for predicting nothing on empty patches), or keep more boxes (lower "
            f"--ignore-unsure-boxes).")


def _predict_training_images(source: SourceDataset, dataset_id: int, folder: Path, configuration: str, fold: str,
                             trainer: str, plans: str, device: str, disable_tta: bool, log: Path) -> Path:
    """Predict the box dataset's images with round ``folder``'s model into ``folder/predictions`` (replaced: a
    partial folder is an interrupted prediction of this run); the folder."""
    predicted = folder / "predictions"
    shutil.rmtree(predicted, ignore_errors=True)
    run_stock(predict_command(source.folder / "imagesTr", predicted, dataset_id, trainer, plans, configuration, fold,
                              device, tta=not disable_tta), log)
    return predicted


def self_train(predictions: Sequence[Path | str], dataset: str | int | Path, out: Path | str, first_id: int,
               name: str, rounds: int = 2, plans: str = "nnUNetPlans", configuration: str = "3d_fullres",
               fold: str = "all", trainer: str = "nnUNetTrainerPresentDice", device: str = "cuda", rule: str = "fixed",
               threshold: float = 0.5, refine: str = "random_walker",
               options: LabelOptions = DEFAULT_OPTIONS, overwrite: bool = False,
               disable_tta: bool = False, resume: bool = False) -> dict:
    """Run ``rounds`` self-training rounds (module docstring).

    Args:
        predictions: ``nnUNetv2_predict --save_probabilities`` folder(s) of the weak model on the box dataset's
            ``imagesTr`` (several = one per fold).
        dataset: the box dataset (ID, name or folder), preprocessed with ``plans``.
        out: working folder (``round<r>/pseudo_masks``, ``round<r>/predictions``, the record and the log).
        first_id: nnU-Net ID of round 1's dataset; round ``r`` gets ``first_id + r - 1``.
        name: dataset name stem; round ``r``'s dataset is ``<name>R<r>``.
        rounds: number of rounds (>= 1).
        plans, configuration, fold, trainer, device: what ``nnUNetv2_train`` / ``nnUNetv2_predict`` get.
        rule, threshold, refine, options: the pseudo-mask settings of every round
            (:func:`~nnunet_fracture.inference.pseudo_masks.write_pseudo_masks`). The default options are
            :data:`DEFAULT_OPTIONS`, the ignore band 0.2-0.5 alone; to add an option and keep the band, pass
            ``dataclasses.replace(DEFAULT_OPTIONS, inside_vertebra=1.5)``, not ``LabelOptions(inside_vertebra=1.5)``.
        overwrite: replace an existing ``out`` and existing datasets with the rounds' IDs, with what nnU-Net
            made from them under another name (their ``nnUNet_preprocessed`` and ``nnUNet_results`` folders). With
            ``resume``, the finished rounds are kept and only what stands at the IDs of the rounds still to run is
            replaced (e.g. another run's round 2 when a one-round run gets a second round).
        disable_tta: predict without test-time mirroring (faster).
        resume: keep the rounds finished in ``out`` (module docstring) and run the rest.

    Returns:
        The record written to ``<out>/self_training.json`` (its first ``rounds`` rounds when more were recorded).

    Raises:
        ValueError: bad arguments (before anything is written).
        RuntimeError: a stock command failed (its log's tail in the message; the finished rounds stay recorded).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    if not 1 <= first_id <= 1000 - rounds:
        raise ValueError(f"--first-id {first_id} leaves no room for {rounds} dataset IDs (1-999). Fix: pick a "
                         f"free ID from 1 to {999 - rounds + 1}.")
    out = Path(out).absolute()
    resuming = resume and (out / RECORD).is_file()
    if not resuming:
        check_output_folder(out, overwrite)
    source = SourceDataset.open(dataset)
    if source.dataset_id is None:
        raise ValueError(f"{source.folder} is not an nnU-Net dataset folder (DatasetXXX_NAME): its plans cannot "
                         f"be moved to the rounds' datasets. Fix: pass the box dataset by its ID.")
    if source.dataset_id in range(first_id, first_id + rounds):
        raise ValueError(f"--first-id {first_id} would overwrite the box dataset {source.dataset_id}. Fix: pick "
                         "IDs after it.")
    log = out / "commands.log"
    record = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "box_dataset": str(source.folder), "weak_predictions": [str(Path(p).absolute()) for p in predictions],
              "settings": {"plans": plans, "configuration": configuration, "fold": fold, "trainer": trainer,
                           "rule": rule, "threshold": threshold, "refine": refine, **options.recorded()},
              "first_id": first_id, "name": name, "rounds": []}
    if resuming:
        record = _resumed_record(out, record)
    done = len(record["rounds"])
    if done >= rounds:
        print(f"{out}: {done} round(s) already finished, nothing to run", flush=True)
        return {**record, "rounds": record["rounds"][:rounds]}
    # the unfinished round of a resumed run (its folder exists, its dataset ID checked against the record) is that
    # run's own output, redone from its start; anything else at a round's ID is replaced only with --overwrite
    ours = resuming and "first_id" in record
    predict = dict(configuration=configuration, fold=fold, trainer=trainer, plans=plans, device=device,
                   disable_tta=disable_tta, log=log)
    current = [Path(p) for p in predictions]
    if done:
        last = record["rounds"][-1]
        if last.get("collapsed"):
            raise RuntimeError(f"--resume: {_collapse_message(done, last['model'])} A further round would learn from "
                               f"its empty masks. Pass --overwrite without --resume to start over.")
        if not _predicted(last):  # the previous run's strong model: it predicts this round's input first
            last["predictions"] = str(_predict_training_images(source, first_id + done - 1, out / f"round{done}",
                                                               **predict))
            _write_record(out, record)
        current = [out / f"round{done}" / "predictions"]
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    for r in tqdm(range(done + 1, rounds + 1), desc="self-training", unit="round", initial=done, total=rounds):
        dataset_id, folder = first_id + r - 1, out / f"round{r}"
        begun = folder.is_dir()
        replaceable = overwrite or (ours and begun)
        stale = stale_derived_folders(dataset_id, f"{name}R{r}")
        if stale and not replaceable:
            raise FileExistsError(f"round {r}'s dataset ID {dataset_id} has nnU-Net folders under another name "
                                  f"({', '.join(map(str, stale))}), and nnU-Net refuses an ID with two names. Fix: "
                                  f"pass --overwrite to replace them, or choose another --first-id.")
        try:
            provenance = write_pseudo_masks(current, source.folder, folder / "pseudo_masks", rule=rule,
                                            threshold=threshold, refine=refine, options=options,
                                            export_dataset=dataset_id,
                                            export_name=f"{name}R{r}", overwrite=replaceable)
        except BaseException:  # arguments or inputs refused: leave no trace of this round (or of a fresh run)
            if not begun:
                shutil.rmtree(out if created and r == 1 else folder, ignore_errors=True)
            raise
        if not resuming and r == 1:
            _write_record(out, record)  # inputs and settings, so that an interrupted round can be resumed
        for path in stale:  # derived from the dataset this round just replaced: orphans now
            shutil.rmtree(path)
            print(f"removed {path}: preprocessed or trained from the dataset that round {r} replaced", flush=True)
        run_stock(["nnUNetv2_extract_fingerprint", "-d", dataset_id, "-np", "1"], log)
        run_stock(["nnUNetv2_move_plans_between_datasets", "-s", source.dataset_id, "-t", dataset_id,
                   "-sp", plans, "-tp", plans], log)
        # nnU-Net's planner puts dataset.json next to the plans, and nnUNetv2_preprocess reads it from there
        exported = Path(provenance["export_dataset"])
        shutil.copyfile(exported / "dataset.json", nnunet_folder("nnUNet_preprocessed") / exported.name / "dataset.json")
        run_stock(["nnUNetv2_preprocess", "-d", dataset_id, "-plans_name", plans, "-c", configuration,
                   "-np", "1"], log)
        run_stock(["nnUNetv2_train", dataset_id, configuration, fold, "-tr", trainer, "-p", plans,
                   "-device", device], log)
        ignored = provenance["unsure_boxes"] + provenance["faint_boxes"]  # the boxes the round does not learn from
        identifier = f"{trainer}__{plans}__{configuration}"
        model = nnunet_folder("nnUNet_results") / exported.name / identifier / f"fold_{fold}"
        entry = {"round": r, "dataset": provenance["export_dataset"], "pseudo_masks": str(folder / "pseudo_masks"),
                 "boxes": provenance["num_boxes"], "empty_boxes": provenance["num_empty_boxes"],
                 "refinement_outcomes": provenance["refinement_outcomes"],
                 "unsure_boxes": len(provenance["unsure_boxes"]),
                 **({"faint_boxes": len(provenance["faint_boxes"])} if options.ignore_faint else {}),
                 **({"dark_boxes": len(provenance["dark_lesions"]["dark_boxes"])} if options.dark_lesions else {}),
                 **({"in_box_dice_of_confident_boxes": in_box_dice(folder / "pseudo_masks" / "masks", source,
                                                                   ignored)} if ignored else {}),
                 "in_box_dice_vs_ground_truth": in_box_dice(folder / "pseudo_masks" / "masks", source),
                 "model": f"{identifier} of dataset {dataset_id}, fold {fold}",
                 **collapse_summary(model / "checkpoint_final.pth"),
                 "predictions": None, "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        record["rounds"].append(entry)
        _write_record(out, record)
        if entry["collapsed"]:
            message = _collapse_message(r, str(model))
            if r < rounds:
                raise RuntimeError(f"{message} The next round would learn from its empty masks; stopped (recorded "
                                   f"in {out / RECORD}).")
            print(f"WARNING: {message}", flush=True)
        if r < rounds:
            current = [_predict_training_images(source, dataset_id, folder, **predict)]
            entry["predictions"] = str(current[0])
            _write_record(out, record)
    return record
