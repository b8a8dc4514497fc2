"""``nnunet-fracture self-train`` end to end through the stock commands on the tiny weak-box dataset (CPU)."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.cli import main
from nnunet_fracture.self_training import DEFAULT_OPTIONS, self_train
from nnunet_fracture.training.settings import ENV_VAR
from nnunet_fracture.training.training_log import collapse_summary
from nnunet_tiny_dataset import quiet_env
from trainer_helpers import prepared_weak
from weak_box_tiny_dataset import DATASETS

TINY = "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 final_validation=false"


def test_bad_arguments_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="rounds must be an integer >= 1"):
        self_train([tmp_path], 988, tmp_path / "out", first_id=990, name="S", rounds=0)
    with pytest.raises(ValueError, match="leaves no room for 3 dataset IDs"):
        self_train([tmp_path], 988, tmp_path / "out", first_id=998, name="S", rounds=3)
    assert not (tmp_path / "out").exists()


def test_in_box_dice_by_hand(nnunet_env, tmp_path):
    from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
    from nnunet_fracture.dataset_conversion.source_dataset import SourceDataset
    from nnunet_fracture.self_training import in_box_dice

    shape = (4, 5, 6)

    def on_grid(array):
        return sitk.GetImageFromArray(array.astype(np.uint8))

    truth = np.zeros(shape)
    truth[0, 0, 0:3] = 1
    truth[3, 4, 5] = 1  # outside the box: not counted
    source = write_raw_dataset([CaseRecord("frac", on_grid(np.zeros(shape)), [VoxelBox((0, 0, 0), (2, 2, 1))],
                                           on_grid(truth))], 501, "Src", raw_root=nnunet_env["nnUNet_raw"])
    masks = tmp_path / "masks"
    masks.mkdir()
    mask = np.zeros(shape)
    mask[0, 0, 0:2] = 1  # two of the three true voxels in the box
    mask[1, 1, 1] = 1  # one false positive in the box
    sitk.WriteImage(on_grid(mask), str(masks / "frac.nii.gz"))
    assert in_box_dice(masks, SourceDataset.open(source)) == pytest.approx(2 * 2 / (3 + 3))
    assert in_box_dice(masks, SourceDataset.open(source), [{"case": "frac", "box_id": 2}]) == pytest.approx(4 / 6)
    assert in_box_dice(masks, SourceDataset.open(source), [{"case": "frac", "box_id": 1}]) is None  # nothing scored


def _recorded_run(nnunet_env, tmp_path, finished_rounds: int, legacy: bool = False, options=None):
    """A one-case box dataset (ID 501), weak predictions and an ``out`` whose record lists ``finished_rounds``
    rounds (Dataset990_SR1, ... with their dataset folders and predictions) made with self_train's defaults,
    ``first_id=990`` and ``name="S"`` (``legacy``: a record from before those two were recorded; ``options``:
    made with these label options instead of the default ones); (weak, out)."""
    from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

    zeros = sitk.GetImageFromArray(np.zeros((4, 5, 6), dtype=np.uint8))
    source = write_raw_dataset([CaseRecord("frac", zeros, [VoxelBox((0, 0, 0), (2, 2, 1))], zeros)], 501, "Src",
                               raw_root=nnunet_env["nnUNet_raw"])
    weak, out = tmp_path / "weak", tmp_path / "out"
    weak.mkdir()
    settings = {"plans": "nnUNetPlans", "configuration": "3d_fullres", "fold": "all",
                "trainer": "nnUNetTrainerPresentDice",
                "rule": "fixed", "threshold": 0.5, "refine": "random_walker",
                **(options.recorded() if options else {"ignore_band": [0.2, 0.5]})}
    rounds = []
    for r in range(1, finished_rounds + 1):
        (out / f"round{r}" / "predictions").mkdir(parents=True)
        dataset = nnunet_env["nnUNet_raw"] / f"Dataset{989 + r}_SR{r}"
        dataset.mkdir()
        rounds.append({"round": r, "dataset": str(dataset), "model": f"model of round {r}"})
    out.mkdir(exist_ok=True)
    record = {"box_dataset": str(source), "weak_predictions": [str(weak)], "settings": settings, "rounds": rounds}
    if not legacy:
        record.update(first_id=990, name="S")
    (out / "self_training.json").write_text(json.dumps(record))
    return weak, out


def _no_stock_commands(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a stock command ran: {args[0]}")

    monkeypatch.setattr("nnunet_fracture.self_training.run_stock", refuse)


class PseudoMasksCalled(Exception):
    pass


def _stop_at_pseudo_masks(monkeypatch) -> list[tuple]:
    """Make self_train's pseudo-mask step record its arguments and stop the run; the list of calls."""
    calls = []

    def record_and_stop(current, *args, **kwargs):
        calls.append((list(current), kwargs))
        raise PseudoMasksCalled

    monkeypatch.setattr("nnunet_fracture.self_training.write_pseudo_masks", record_and_stop)
    _no_stock_commands(monkeypatch)
    return calls


def test_resume_keeps_finished_rounds_and_runs_nothing_more(nnunet_env, tmp_path, monkeypatch, capsys):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=2)
    _no_stock_commands(monkeypatch)
    record = self_train([weak], 501, out, first_id=990, name="S", rounds=1, resume=True)
    assert [entry["model"] for entry in record["rounds"]] == ["model of round 1"]  # the strong model of 1 round
    assert "2 round(s) already finished" in capsys.readouterr().out
    assert len(json.loads((out / "self_training.json").read_text())["rounds"]) == 2  # the record is untouched


@pytest.mark.parametrize("begun", [True, False])
def test_resume_redoes_only_its_own_unfinished_round(nnunet_env, tmp_path, monkeypatch, begun):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=1)
    if begun:  # round 2 had started: its folder is this run's
        (out / "round2" / "pseudo_masks").mkdir(parents=True)
    calls = _stop_at_pseudo_masks(monkeypatch)
    with pytest.raises(PseudoMasksCalled):
        self_train([weak], 501, out, first_id=990, name="S", rounds=2, resume=True)
    [(current, kwargs)] = calls
    assert current == [out / "round1" / "predictions"]  # round 2 starts from round 1's model
    assert (kwargs["export_dataset"], kwargs["export_name"]) == (991, "SR2")
    assert kwargs["overwrite"] is begun  # a dataset 991 that this run did not begin is replaced only with --overwrite
    assert (out / "round2").is_dir() is begun and (out / "round1" / "predictions").is_dir()


def test_resume_has_the_last_rounds_model_predict_the_training_images_first(nnunet_env, tmp_path, monkeypatch):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=1)
    record = json.loads((out / "self_training.json").read_text())
    record["rounds"][0]["predictions"] = None  # a finished run's last round: its model predicted nothing
    (out / "self_training.json").write_text(json.dumps(record))
    (out / "round1" / "predictions" / "partial.npz").write_text("interrupted")  # an interrupted earlier attempt
    calls = _stop_at_pseudo_masks(monkeypatch)
    commands = []

    def predict(command, log):
        assert not (out / "round1" / "predictions").exists()  # the interrupted attempt is gone first
        commands.append([str(part) for part in command])
        (out / "round1" / "predictions").mkdir()

    monkeypatch.setattr("nnunet_fracture.self_training.run_stock", predict)
    with pytest.raises(PseudoMasksCalled):
        self_train([weak], 501, out, first_id=990, name="S", rounds=2, resume=True, disable_tta=True)
    [command] = commands
    assert command[0] == "nnUNetv2_predict" and command[command.index("-d") + 1] == "990"  # round 1's model
    assert command[command.index("-o") + 1] == str(out / "round1" / "predictions") and "--disable_tta" in command
    assert calls[0][0] == [out / "round1" / "predictions"]  # round 2 starts from them
    saved = json.loads((out / "self_training.json").read_text())["rounds"][0]["predictions"]
    assert saved == str(out / "round1" / "predictions")  # recorded, so a second interruption does not redo it


def test_a_legacy_record_never_replaces_an_unfinished_rounds_dataset(nnunet_env, tmp_path, monkeypatch):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=0, legacy=True)
    (out / "round1").mkdir()  # begun, but the record cannot prove that ID 990 was this run's
    calls = _stop_at_pseudo_masks(monkeypatch)
    with pytest.raises(PseudoMasksCalled):
        self_train([weak], 501, out, first_id=990, name="S", rounds=1, resume=True)
    assert calls[0][1]["overwrite"] is False


def test_a_fresh_run_refused_at_its_first_pseudo_masks_leaves_nothing(nnunet_env, tmp_path, monkeypatch):
    weak, _ = _recorded_run(nnunet_env, tmp_path, finished_rounds=0)
    calls = _stop_at_pseudo_masks(monkeypatch)
    with pytest.raises(PseudoMasksCalled):
        self_train([weak], 501, tmp_path / "fresh", first_id=990, name="S", rounds=2)
    assert calls[0][0] == [weak] and not (tmp_path / "fresh").exists()  # a plain rerun is not refused


@pytest.mark.parametrize("option, value, off", [("ignore_ring", 1, 0), ("ignore_unsure", 0.4, 0.0),
                                               ("inside_vertebra", 1.5, None), ("ignore_faint", 100.0, 0.0),
                                               ("dark_lesions", 100.0, 0.0), ("ignore_dark_margin", 2, 0)])
def test_a_round_label_option_reaches_every_rounds_pseudo_masks_and_the_record_and_resume_sees_it(
        nnunet_env, tmp_path, monkeypatch, option, value, off):
    # the base run has what the option needs (dark lesions need the vertebra, their margin dark lesions), so that
    # the option is all that differs
    needs = {"dark_lesions": {"inside_vertebra": 0.0}, "ignore_dark_margin": {"inside_vertebra": 0.0,
                                                                              "dark_lesions": 100.0}}
    base = dataclasses.replace(DEFAULT_OPTIONS, **needs.get(option, {}))
    with_option = dataclasses.replace(base, **{option: value})
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=1, options=base)  # recorded without the option
    calls = _stop_at_pseudo_masks(monkeypatch)
    with pytest.raises(ValueError, match="was made with settings"):  # the option is another recipe
        self_train([weak], 501, out, first_id=990, name="S", rounds=2, resume=True, options=with_option)
    with pytest.raises(PseudoMasksCalled):  # the same recipe resumes: a record without the option stays valid
        self_train([weak], 501, out, first_id=990, name="S", rounds=2, resume=True, options=base)
    assert getattr(calls[-1][1]["options"], option) == off
    with pytest.raises(PseudoMasksCalled):
        self_train([weak], 501, tmp_path / "with_option", first_id=990, name="S", rounds=1, options=with_option)
    assert getattr(calls[-1][1]["options"], option) == value


@pytest.mark.parametrize("change, message", [
    ({"refine": "none"}, "was made with settings"),
    ({"first_id": 980}, "was made with first_id 990, not 980"),
    ({"name": "T"}, "was made with name 'S', not 'T'"),
    ({"name": "T", "overwrite": True}, "or pass --overwrite without --resume to start over"),
])
def test_resume_refuses_another_run(nnunet_env, tmp_path, monkeypatch, change, message):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=1)
    _no_stock_commands(monkeypatch)
    before = (out / "self_training.json").read_text()
    with pytest.raises(ValueError, match=message):
        self_train([weak], 501, out, **{"first_id": 990, "name": "S", "rounds": 2, "resume": True, **change})
    assert (out / "self_training.json").read_text() == before


def test_resume_checks_a_legacy_records_first_id_by_its_datasets(nnunet_env, tmp_path, monkeypatch):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=1, legacy=True)
    _no_stock_commands(monkeypatch)
    with pytest.raises(ValueError, match="used Dataset990_SR1, not an ID 980"):
        self_train([weak], 501, out, first_id=980, name="S", rounds=2, resume=True)


@pytest.mark.parametrize("lost", ["predictions", "dataset"])
def test_resume_refuses_when_a_finished_round_lost_its_outputs(nnunet_env, tmp_path, monkeypatch, lost):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=1)
    (out / "round1" / "predictions" if lost == "predictions" else nnunet_env["nnUNet_raw"] / "Dataset990_SR1").rmdir()
    _no_stock_commands(monkeypatch)
    with pytest.raises(ValueError, match="round 1's (dataset .* is|predictions .* are) gone"):
        self_train([weak], 501, out, first_id=990, name="S", rounds=2, resume=True)


def test_resume_refuses_a_record_it_cannot_read(nnunet_env, tmp_path, monkeypatch):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=0)
    (out / "self_training.json").write_text(json.dumps({"rounds": [{"dataset": "x"}]}))
    with pytest.raises(ValueError, match="cannot be read as a self-training record"):
        self_train([weak], 501, out, first_id=990, name="S", rounds=2, resume=True)


def test_without_resume_a_recorded_run_is_not_replaced(nnunet_env, tmp_path, monkeypatch):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=1)
    _no_stock_commands(monkeypatch)
    with pytest.raises(FileExistsError, match="--overwrite"):
        self_train([weak], 501, out, first_id=990, name="S", rounds=2)


@pytest.mark.slow
def test_one_round_through_the_stock_commands(weak_dataset_cache, weak_box_model, nnunet_env, tmp_path, monkeypatch,
                                             capsys):
    prepared_weak(weak_dataset_cache, nnunet_env, "box")
    dataset_id, name = DATASETS["box"]
    for key, value in quiet_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(ENV_VAR, TINY)
    weak = tmp_path / "weak_pred"  # the session's weak model's probabilities (tests/weak_box_model.py)
    shutil.copytree(weak_box_model.predictions, weak)

    out = tmp_path / "self"
    assert main(["self-train", str(weak), "--dataset", str(dataset_id), "--out", str(out), "--first-id", "990",
                 "--name", "TinySelf", "--rounds", "1", "-p", "nnUNetPlansTiny", "-tr", "nnUNetTrainerFracture",
                 "-device", "cpu", "--threshold", "0.001", "--refine", "none", "--disable-tta"]) == 0
    printed = capsys.readouterr().out
    assert "round 1: " in printed and "strong model: nnUNetTrainerFracture__nnUNetPlansTiny__3d_fullres" in printed

    record = json.loads((out / "self_training.json").read_text())
    [entry] = record["rounds"]
    raw = nnunet_env["nnUNet_raw"]
    assert entry["dataset"] == str(raw / "Dataset990_TinySelfR1")
    meta = json.loads((raw / "Dataset990_TinySelfR1" / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "fracture": 1, "ignore": 2}
    # labels: the round's pseudo-mask (1), ignore (2) only inside the boxes, background elsewhere
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "Dataset990_TinySelfR1" / "labelsTr" / "case0.nii.gz")))
    boxes = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / name / "labelsTr" / "case0.nii.gz"))) > 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "round1" / "pseudo_masks" / "masks" / "case0.nii.gz")))
    assert np.array_equal(labels == 1, mask == 1) and not labels[~boxes].any() and mask.any()
    assert 0.0 < entry["in_box_dice_vs_ground_truth"] <= 1.0
    model = nnunet_env["nnUNet_results"] / "Dataset990_TinySelfR1" / "nnUNetTrainerFracture__nnUNetPlansTiny__3d_fullres"
    assert (model / "fold_all" / "checkpoint_final.pth").is_file()
    logged = collapse_summary(model / "fold_all" / "checkpoint_final.pth")  # the round's own online pseudo Dice
    assert {key: entry[key] for key in logged} == logged
    # the last round's (strong) model does not predict the training images until a further round needs them
    assert entry["predictions"] is None and not (out / "round1" / "predictions").exists()
    plans = json.loads((nnunet_env["nnUNet_preprocessed"] / "Dataset990_TinySelfR1" / "nnUNetPlansTiny.json").read_text())
    assert plans["dataset_name"] == "Dataset990_TinySelfR1"

    # --resume with one more round: round 1's model stays as it was and first predicts the training images, on
    # which round 2 trains
    checkpoint = model / "fold_all" / "checkpoint_final.pth"
    round1_written = checkpoint.stat().st_mtime_ns
    assert main(["self-train", str(weak), "--dataset", str(dataset_id), "--out", str(out), "--first-id", "990",
                 "--name", "TinySelf", "--rounds", "2", "-p", "nnUNetPlansTiny", "-tr", "nnUNetTrainerFracture",
                 "-device", "cpu", "--threshold", "0.001", "--refine", "none", "--disable-tta", "--resume"]) == 0
    record = json.loads((out / "self_training.json").read_text())
    assert [entry["round"] for entry in record["rounds"]] == [1, 2]
    assert record["rounds"][0] == {**entry, "predictions": str(out / "round1" / "predictions")}
    assert checkpoint.stat().st_mtime_ns == round1_written
    for case in ("case0", "case4"):
        assert (out / "round1" / "predictions" / f"{case}.npz").is_file()
    assert record["rounds"][1]["predictions"] is None
    assert (nnunet_env["nnUNet_results"] / "Dataset991_TinySelfR2" / "nnUNetTrainerFracture__nnUNetPlansTiny__3d_fullres"
            / "fold_all" / "checkpoint_final.pth").is_file()
    assert not (out / "round2" / "predictions").exists()  # the new last round predicts nothing either
    provenance = json.loads((out / "round2" / "pseudo_masks" / "pseudo_masks.json").read_text())
    assert provenance["prediction_folders"] == [str(out / "round1" / "predictions")]  # round 1's model's output


def test_a_rounds_id_with_nnunet_folders_under_another_name(nnunet_env, tmp_path, monkeypatch):
    weak, _ = _recorded_run(nnunet_env, tmp_path, finished_rounds=0)
    stale = [nnunet_env[root] / "Dataset990_OtherR1" for root in ("nnUNet_preprocessed", "nnUNet_results")]
    for path in stale:
        path.mkdir(parents=True)
    calls = _stop_at_pseudo_masks(monkeypatch)
    with pytest.raises(FileExistsError, match="round 1's dataset ID 990 has nnU-Net folders under another name"):
        self_train([weak], 501, tmp_path / "a", first_id=990, name="S", rounds=1)
    assert not calls and all(path.is_dir() for path in stale)  # refused before anything ran

    def no_stock_command(*args, **kwargs):  # reached once the round's dataset is in place and the stale folders gone
        raise AssertionError(f"a stock command ran: {args[0]}")

    monkeypatch.setattr("nnunet_fracture.self_training.write_pseudo_masks",
                        lambda *a, **k: {"export_dataset": str(tmp_path)})
    monkeypatch.setattr("nnunet_fracture.self_training.run_stock", no_stock_command)
    with pytest.raises(AssertionError, match="nnUNetv2_extract_fingerprint"):
        self_train([weak], 501, tmp_path / "b", first_id=990, name="S", rounds=1, overwrite=True)
    assert not any(path.exists() for path in stale)


def test_resume_with_overwrite_keeps_finished_rounds_and_replaces_what_stands_at_a_new_rounds_id(
        nnunet_env, tmp_path, monkeypatch):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=1)  # round 1 with its predictions
    record = json.loads((out / "self_training.json").read_text())
    stale = [nnunet_env[root] / "Dataset991_OtherR2" for root in ("nnUNet_preprocessed", "nnUNet_results")]
    for path in stale:
        path.mkdir(parents=True)
    calls = _stop_at_pseudo_masks(monkeypatch)
    with pytest.raises(FileExistsError, match="round 2's dataset ID 991 has nnU-Net folders under another name"):
        self_train([weak], 501, out, first_id=990, name="S", rounds=2, resume=True)
    assert not calls
    with pytest.raises(PseudoMasksCalled):
        self_train([weak], 501, out, first_id=990, name="S", rounds=2, resume=True, overwrite=True)
    assert calls[-1][1]["overwrite"] is True and calls[-1][0] == [out / "round1" / "predictions"]
    assert (nnunet_env["nnUNet_raw"] / "Dataset990_SR1").is_dir()  # the finished round stays
    assert json.loads((out / "self_training.json").read_text())["rounds"] == record["rounds"]


def _rounds_that_collapse(nnunet_env, monkeypatch) -> list:
    """Make every round's pseudo-masks a stand-in export, its stock commands no-ops and its model collapsed; the
    list of stock commands run."""
    commands = []

    def export(current, source, out, export_dataset, export_name, **kwargs):
        name = f"Dataset{export_dataset}_{export_name}"
        for root in ("nnUNet_raw", "nnUNet_preprocessed"):
            (nnunet_env[root] / name).mkdir(parents=True, exist_ok=True)
        (nnunet_env["nnUNet_raw"] / name / "dataset.json").write_text("{}")
        return {"export_dataset": str(nnunet_env["nnUNet_raw"] / name), "unsure_boxes": [], "faint_boxes": [],
                "num_boxes": 1, "num_empty_boxes": 0, "refinement_outcomes": {}}

    monkeypatch.setattr("nnunet_fracture.self_training.write_pseudo_masks", export)
    monkeypatch.setattr("nnunet_fracture.self_training.run_stock", lambda command, log: commands.append(command))
    monkeypatch.setattr("nnunet_fracture.self_training.collapse_summary",
                        lambda checkpoint: {"pseudo_dice_last_epochs": 0.0, "collapsed": True})
    return commands


def test_a_collapsed_round_is_recorded_and_stops_the_rounds_that_would_learn_from_it(nnunet_env, tmp_path,
                                                                                     monkeypatch):
    weak, _ = _recorded_run(nnunet_env, tmp_path, finished_rounds=0)
    commands = _rounds_that_collapse(nnunet_env, monkeypatch)
    out = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match=r"round 1's model .*Dataset990_SR1.* collapsed: .*Fix: train the rounds "
                                           r"with --trainer nnUNetTrainerPresentDice.*stopped"):
        self_train([weak], 501, out, first_id=990, name="S", rounds=2)
    [entry] = json.loads((out / "self_training.json").read_text())["rounds"]
    assert (entry["collapsed"], entry["pseudo_dice_last_epochs"]) == (True, 0.0)
    assert commands[-1][0] == "nnUNetv2_train"  # round 1's model never predicted round 2's input


def test_a_collapsed_last_round_is_recorded_with_a_warning(nnunet_env, tmp_path, monkeypatch, capsys):
    weak, _ = _recorded_run(nnunet_env, tmp_path, finished_rounds=0)
    _rounds_that_collapse(nnunet_env, monkeypatch)
    record = self_train([weak], 501, tmp_path / "fresh", first_id=990, name="S", rounds=1)
    assert record["rounds"][0]["collapsed"] is True
    assert "WARNING: round 1's model" in capsys.readouterr().out


def test_resume_refuses_to_add_rounds_after_a_collapsed_one(nnunet_env, tmp_path, monkeypatch):
    weak, out = _recorded_run(nnunet_env, tmp_path, finished_rounds=1)
    record = json.loads((out / "self_training.json").read_text())
    record["rounds"][0]["collapsed"] = True
    (out / "self_training.json").write_text(json.dumps(record))
    _no_stock_commands(monkeypatch)
    with pytest.raises(RuntimeError, match=r"--resume: round 1's model \(model of round 1\) collapsed: .*Pass "
                                           r"--overwrite without --resume to start over"):
        self_train([weak], 501, out, first_id=990, name="S", rounds=2, resume=True)
