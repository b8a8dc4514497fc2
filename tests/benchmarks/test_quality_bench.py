"""benchmarks/quality*.py: the cache key, the table built from quality.json, the README update, the HU floor."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import quality_ablation  # noqa: E402
import quality_arms  # noqa: E402
from quality_arms import ARM_SETS, ARMS, Arm, check_arms, run_key  # noqa: E402
from quality_regimes import REGIMES  # noqa: E402
from quality_table import ablation_table, markdown_table, mean_std, paired_change, update_readme  # noqa: E402


def test_every_arm_set_names_declared_arms_and_references_need_no_trainer():
    assert {name for arms in ARM_SETS.values() for name in arms} <= set(ARMS)
    assert {"full_mask", "box_fill", "weak_bbox", "hu_threshold"} <= set(ARM_SETS["core"])
    for name, arm in ARMS.items():
        assert (arm.trainer is None) == (arm.reference is not None), name
        assert arm.labels in ("mask", "box", "slice", "mask_polarity"), name
        assert arm.note, f"{name}: `quality.py --list` prints each arm's note"


def test_run_key_follows_the_recipe_not_the_note():
    arm, regime = ARMS["full_mask"], REGIMES["cpu"]
    key = run_key(arm, regime, 0, "2")
    assert run_key(dataclasses.replace(arm, note="reworded"), regime, 0, "2") == key
    assert run_key(dataclasses.replace(arm, settings="initial_lr=0.02"), regime, 0, "2") != key
    assert run_key(arm, dataclasses.replace(regime, epochs=regime.epochs + 1), 0, "2") != key
    assert run_key(arm, regime, 1, "2") != key and run_key(arm, regime, 0, "3") != key
    # options added after results were cached change the key only when set
    assert run_key(dataclasses.replace(arm, refine="random_walker"), regime, 0, "2") != key
    assert run_key(dataclasses.replace(arm, refine=None), regime, 0, "2") == key


def test_arms_that_reuse_predictions_must_train_the_same_model(monkeypatch):
    check_arms()  # the declared arms are consistent
    base = Arm("nnUNetTrainerWeakBBox", labels="box", settings="lambda_tightness=1")
    monkeypatch.setitem(quality_arms.ARMS, "base_probe", base)
    monkeypatch.setitem(quality_arms.ARMS, "refined_probe", dataclasses.replace(base, refine="random_walker",
                                                                              predictions_of="base_probe"))
    check_arms()
    monkeypatch.setitem(quality_arms.ARMS, "refined_probe", dataclasses.replace(
        base, settings="lambda_tightness=2", predictions_of="base_probe"))
    with pytest.raises(ValueError, match="refined_probe: reuses the predictions of base_probe but its settings"):
        check_arms()


def test_mirroring_needs_a_model_of_the_arms_own(monkeypatch):
    base = Arm("nnUNetTrainerFracture", settings="oversample_foreground_percent=1.0")
    monkeypatch.setitem(quality_arms.ARMS, "base_probe", base)
    monkeypatch.setitem(quality_arms.ARMS, "mirrored_probe", dataclasses.replace(base, mirroring=True))
    check_arms()
    monkeypatch.setitem(quality_arms.ARMS, "mirrored_probe", dataclasses.replace(
        base, mirroring=True, predictions_of="base_probe"))
    with pytest.raises(ValueError, match="mirrored_probe: mirroring sets how the arm's own model predicts"):
        check_arms()


def test_an_arm_mirrors_its_predictions_only_when_it_says_so(tmp_path, monkeypatch):
    """The mirrored arm predicts with nnU-Net's test-time mirroring (no --disable_tta), its base as the regime
    says (cpu: without), both from the one model that Workspace.train trained for their shared recipe."""
    import nnunet_fracture.stock_commands as stock_commands
    from quality import Workspace

    ws = Workspace(tmp_path, "cpu", REGIMES["cpu"], results=tmp_path / "results")
    commands = []
    monkeypatch.setattr(stock_commands, "run_stock", lambda command, log, env, echo=False: commands.append(command))
    monkeypatch.setattr(Workspace, "dataset", lambda self, seed, labels: 700)
    monkeypatch.setattr(Workspace, "train", lambda self, dataset_id, trainer, settings: None)
    monkeypatch.setattr(Workspace, "test_dataset", lambda self: tmp_path / "test")
    for name in ("full_mask_all_foreground", "full_mask_all_foreground_mirrored"):
        ws.train_and_predict(name, ARMS[name], 0)
    assert ["--disable_tta" in c for c in commands] == [True, False]
    assert run_key(ARMS["full_mask_all_foreground"], REGIMES["cpu"], 0, "2") != \
        run_key(ARMS["full_mask_all_foreground_mirrored"], REGIMES["cpu"], 0, "2")


def test_mean_std_by_hand():
    assert mean_std([0.5, 0.7, None]) == "0.600 ± 0.141 (2)"  # sample std of 0.5, 0.7: sqrt(0.02) = 0.1414
    assert mean_std([None]) == "n/a" and mean_std([0.25]) == "0.250 (1)"
    assert mean_std([100.0, 300.0]) == "200 ± 141 (2)"


def test_table_from_json_and_readme_markers(tmp_path):
    seeds = {"0": {"whole_volume_dice": 0.5, "in_box_dice": 0.8, "recall_by_kind": {"wedge": 1.0}, "seconds": 10},
             "1": {"whole_volume_dice": 0.7, "in_box_dice": 0.6, "recall_by_kind": {"wedge": 0.5}, "seconds": 30}}
    data = {"regime": {"name": "cpu", **dataclasses.asdict(REGIMES["cpu"])}, "phantom_version": "2",
            "arms": {"full_mask": {"config": {}, "seeds": seeds}}}
    table = markdown_table(data)
    row = next(line for line in table.splitlines() if line.startswith("| `full_mask`"))
    assert "| 0.600 ± 0.141 (2) |" in row and "| 0.700 ± 0.141 (2) |" in row  # whole volume; in boxes
    assert "wedge 0.750 ± 0.354 (2)" in row and row.endswith("| 20 |")
    assert "The 2 arm x seed runs below took 0.0 hours of this machine in all." in table  # 40 s; none trained
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- b -->\nold table\n<!-- e -->\nafter\n", encoding="utf-8")
    update_readme(readme, table, "<!-- b -->", "<!-- e -->")
    text = readme.read_text(encoding="utf-8")
    assert "old table" not in text and text.startswith("intro\n<!-- b -->\nRegime `cpu`") and text.endswith("<!-- e -->\nafter\n")
    with pytest.raises(ValueError, match="lacks the markers"):
        update_readme(readme, table, "<!-- x -->", "<!-- e -->")


def test_paired_change_by_hand():
    arm = {"0": {"d": 0.6}, "1": {"d": 0.5}, "2": {"d": 0.9}}
    base = {"0": {"d": 0.5}, "1": {"d": 0.6}}  # seed 2 has no base: left out
    # deltas +0.1 and -0.1: mean 0, sample std sqrt(0.02) = 0.1414, one of two higher
    assert paired_change(arm, base, "d") == "+0.000 ± 0.141, 1 of 2 up"
    assert paired_change({"0": {"d": 0.7}}, base, "d") == "+0.200, 1 of 1 up"
    assert paired_change(base, base, "d") == "same" and paired_change(arm, {"5": {"d": 1.0}}, "d") == "n/a"
    # the same model's post-processing pairs only results scored on one run of it
    ran = {"0": {"d": 0.6, "predictions_id": "a"}, "1": {"d": 0.8, "predictions_id": "b"}}
    source = {"0": {"d": 0.5, "predictions_id": "a"}, "1": {"d": 0.5, "predictions_id": "old"}}
    assert paired_change(ran, source, "d", same_model=True) == "+0.100, 1 of 1 up"
    assert paired_change(ran, source, "d") == "+0.200 ± 0.141, 2 of 2 up"


def test_ablation_rows_and_declared_steps():
    seeds = {"0": {"in_box_dice": 0.5, "whole_volume_dice": 0.2, "fp_voxels_per_normal_case": 100.0},
             "1": {"in_box_dice": 0.7, "whole_volume_dice": 0.4, "fp_voxels_per_normal_case": 300.0}}
    better = {s: {**e, "in_box_dice": e["in_box_dice"] + 0.1} for s, e in seeds.items()}
    data = {"arms": {"base": {"seeds": seeds}, "step": {"seeds": better}}}
    table = ablation_table(data, (("base", None, "the base"), ("step", "base", "+ a step"), ("later", "step", "+ x")),
                           lambda arm, base: "same_model" if arm == "step" else None)
    lines = table.splitlines()
    assert "| the base | `base` | 0.600 ± 0.141 (2) |  | 0.300 ± 0.141 (2) |  | 200 ± 141 (2) |" in lines
    assert ("| + a step (on `base`) | `step` | 0.700 ± 0.141 (2) | +0.100 ± 0.000, 2 of 2 up | 0.300 ± 0.141 (2) | "
            "same | 200 ± 141 (2) |") in lines
    assert "| + x | `later` | no run yet | | | | |" in lines
    for arm, base, what in quality_ablation.ABLATION:  # every step names declared arms and says what it adds
        assert arm in ARMS and (base is None or base in ARMS) and what, arm
    relation = quality_ablation.relation
    assert relation("solid_bags_dark", "solid_bags_inside") == "same_model"  # both post-process weak_bbox
    assert relation("voxel_bags_refined", "voxel_bags") == "same_model"
    assert relation("flywheel_dark_present_r1", "solid_bags_dark") is None  # a round trains its own model
    assert relation("flywheel_dark_present", "flywheel_dark_present_r1") == "continues"
    assert relation("flywheel_unsure", "flywheel_unsure_r1") == "continues"
    assert relation("flywheel_dark_present", "flywheel_solid_faint_present") is None  # another recipe


def test_a_further_round_pairs_with_its_own_runs_previous_round():
    # seed 0 kept its previous round (another run than the cached one-round result): it pairs with that; seed 1
    # did not (a run from before results kept it) and pairs with the cached result
    base = {"0": {"in_box_dice": 0.5, "whole_volume_dice": 0.5}, "1": {"in_box_dice": 0.6, "whole_volume_dice": 0.6}}
    later = {"0": {"in_box_dice": 0.7, "whole_volume_dice": 0.7,
                   "previous_round": {"in_box_dice": 0.65, "whole_volume_dice": 0.4}},
             "1": {"in_box_dice": 0.5, "whole_volume_dice": 0.7}}
    table = ablation_table({"arms": {"r1": {"seeds": base}, "r2": {"seeds": later}}},
                           (("r1", None, "round 1"), ("r2", "r1", "+ round 2")), lambda arm, base: "continues")
    row = next(line for line in table.splitlines() if "`r2`" in line)
    # in boxes: seed 0 0.7 - 0.65 = +0.05, seed 1 0.5 - 0.6 = -0.1: mean -0.025, std sqrt(0.01125) = 0.106
    # whole volume: seed 0 0.7 - 0.4 = +0.3, seed 1 0.7 - 0.6 = +0.1: mean +0.2, std 0.141
    assert "| -0.025 ± 0.106, 1 of 2 up |" in row and "| +0.200 ± 0.141, 2 of 2 up |" in row


def test_predictions_id_follows_the_files(tmp_path):
    from quality_scoring import predictions_id

    (tmp_path / "a.npz").write_bytes(b"12345")
    first = predictions_id(tmp_path)
    assert predictions_id(tmp_path) == first and len(first) == 10
    (tmp_path / "a.npz").write_bytes(b"123456")  # another run's file of another size
    assert predictions_id(tmp_path) != first


def test_hu_floor_picks_the_threshold_of_best_dice(tmp_path):
    """Two training cases whose fracture voxels are 600 HU in a box of 100 HU bone and 900 HU cortex."""
    import json

    import SimpleITK as sitk
    from quality_scoring import best_hu_threshold

    raw, phantom = tmp_path / "raw", tmp_path / "phantom"
    for sub in ("imagesTr", "groundTruthTr"):
        (raw / sub).mkdir(parents=True)
    phantom.mkdir()
    boxes, described = {}, []
    for case in ("a", "b"):
        ct = np.full((1, 4, 4), 100, np.int16)
        gt = np.zeros((1, 4, 4), np.uint8)
        ct[0, 0, :], gt[0, 0, :] = 600, 1  # the fracture: one row of 600 HU
        ct[0, 1, :2] = 900  # cortex: brighter still, not fracture
        for array, path in ((ct, raw / "imagesTr" / f"{case}_0000.nii.gz"), (gt, raw / "groundTruthTr" / f"{case}.nii.gz")):
            sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
        boxes[case] = [{"box_id": 1, "lo": [0, 0, 0], "hi": [3, 3, 0]}]
        described.append({"case_id": case, "fractures": [{"type": "wedge"}]})
    (raw / "boxes.json").write_text(json.dumps(boxes))
    (phantom / "phantom.json").write_text(json.dumps({"cases": described}))
    # HU >= t for t in (100, 600]: 4 true + 2 cortex called -> Dice 8 / 10; t in (600, 900]: only cortex -> 0;
    # t <= 100: everything -> 8 / 20. The first threshold of the best plateau is 110 (steps of 10 HU)
    assert best_hu_threshold(raw, phantom) == 110.0


def test_the_floors_inside_the_vertebra_by_hand(tmp_path):
    """One case: a row of 4 fracture voxels (600 HU) in a 4 x 4 box of 100 HU bone, whose 2 cortex voxels (900 HU)
    lie outside the boxed vertebra L1 (label 0 in its vertebra map)."""
    import json

    import SimpleITK as sitk
    from quality_scoring import cases, score_reference, vertebra_region

    raw, phantom = tmp_path / "raw", tmp_path / "phantom"
    for sub in ("imagesTr", "groundTruthTr", "vertebraeTr"):
        (raw / sub).mkdir(parents=True)
    phantom.mkdir()
    ct, gt = np.full((1, 4, 4), 100, np.int16), np.zeros((1, 4, 4), np.uint8)
    vertebrae = np.full((1, 4, 4), 20, np.uint8)
    ct[0, 0, :], gt[0, 0, :] = 600, 1
    ct[0, 1, :2], vertebrae[0, 1, :2] = 900, 0
    for array, path in ((ct, "imagesTr/a_0000.nii.gz"), (gt, "groundTruthTr/a.nii.gz"),
                        (vertebrae, "vertebraeTr/a.nii.gz")):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(raw / path))
    box = {"box_id": 1, "lo": [0, 0, 0], "hi": [3, 3, 0], "label": "L1"}
    (raw / "boxes.json").write_text(json.dumps({"a": [box]}))
    (phantom / "phantom.json").write_text(json.dumps({"cases": [{"case_id": "a", "fractures": [{"type": "wedge"}]}]}))
    (case, _, boxes), = cases(raw, phantom)
    assert [b.label for b in boxes] == ["L1"] and np.array_equal(vertebra_region(raw, case, boxes, 0.0), vertebrae > 0)

    def in_box(kind, inside_vertebra=None):
        return score_reference(kind, raw, phantom, raw, phantom, inside_vertebra)["in_box_dice"]

    # the whole box: 16 voxels filled, 4 true -> 8 / 20; the vertebra's 14 -> 8 / 18
    assert in_box("box_fill") == pytest.approx(8 / 20) and in_box("box_fill", 0.0) == pytest.approx(8 / 18)
    # HU >= 110 (the best threshold either way) calls the 4 true voxels and, in the whole box, the 2 cortex ones
    assert in_box("hu_threshold") == pytest.approx(8 / 10) and in_box("hu_threshold", 0.0) == pytest.approx(1.0)


def test_a_model_trained_with_the_same_settings_is_reused(tmp_path, monkeypatch):
    """Workspace.train runs nnUNetv2_train once per dataset, trainer and settings; other settings train again."""
    import nnunet_fracture.stock_commands as stock_commands
    from quality import Workspace

    ws = Workspace(tmp_path, "smoke", REGIMES["smoke"], results=tmp_path / "results")
    (Path(ws.env["nnUNet_raw"]) / "Dataset701_Probe").mkdir()
    calls = []

    def fake_train(command, log, env, echo=False):
        calls.append(env["NNUNET_FRACTURE_SETTINGS"])
        fold = Path(ws.env["nnUNet_results"]) / "Dataset701_Probe" / f"{command[5]}__nnUNetPlansBench__3d_fullres"
        (fold / "fold_all").mkdir(parents=True, exist_ok=True)
        (fold / "fold_all" / "checkpoint_final.pth").write_bytes(b"")

    monkeypatch.setattr(stock_commands, "run_stock", fake_train)
    first = ws.train(701, "nnUNetTrainerWeakBBox", "lambda_tightness=1")
    assert ws.train(701, "nnUNetTrainerWeakBBox", "lambda_tightness=1") == first and len(calls) == 1
    ws.train(701, "nnUNetTrainerWeakBBox", "lambda_tightness=2")
    ws.train(701, "nnUNetTrainerWeakBBox", "lambda_tightness=1")  # the folder now holds the =2 model: train again
    assert [c.split()[-1] for c in calls] == ["lambda_tightness=1", "lambda_tightness=2", "lambda_tightness=1"]


def test_a_self_training_arm_trains_its_weak_model_only_without_cached_predictions(tmp_path, monkeypatch):
    """Arms that differ only in their round labels (ring, unsure boxes) share the weak model's predictions of the
    training images; with them cached, the weak model is not trained again."""
    import nnunet_fracture.self_training as self_training
    from quality import Workspace

    ws = Workspace(tmp_path, "smoke", REGIMES["smoke"], results=tmp_path / "results")
    trained, predicted, rounds = [], [], []
    monkeypatch.setattr(ws, "train", lambda dataset_id, trainer, settings: trained.append(settings))
    monkeypatch.setattr(ws, "raw", lambda dataset_id: tmp_path / f"Dataset{dataset_id:03d}_Probe")

    def fake_predict(images, out, dataset_id, trainer):
        out.mkdir(parents=True)
        predicted.append(trainer)
        return out

    monkeypatch.setattr(ws, "predict", fake_predict)
    monkeypatch.setattr(self_training, "self_train", lambda *args, **kwargs: rounds.append(kwargs))
    arm = ARMS["flywheel_unsure_r1"]
    assert ws.self_training(arm, 0, 701) == ws.self_training(dataclasses.replace(arm, ignore_unsure=0.2), 0, 701)
    assert trained == [arm.settings] and predicted == [arm.trainer]
    assert [r["options"].ignore_unsure for r in rounds] == [0.4, 0.2]


def test_weak_bbox_arm_is_the_trainers_default_recipe_and_mean_bags_the_first_one():
    """The weak_bbox arm spells its settings out (so its cached runs keep their key); they must equal what
    nnUNetTrainerWeakBBox does with no settings at all."""
    from nnunet_fracture.trainers import nnUNetTrainerWeakBBox
    from nnunet_fracture.training.settings import parse_pairs, resolve_settings

    defaults, _ = resolve_settings(nnUNetTrainerWeakBBox, "")
    spelled, _ = resolve_settings(nnUNetTrainerWeakBBox, ARMS["weak_bbox"].settings)
    assert spelled == defaults
    first = resolve_settings(nnUNetTrainerWeakBBox, ARMS["mean_bags"].settings)[0]
    assert {k: first[k] for k in parse_pairs(ARMS["mean_bags"].settings)} == {
        "lambda_outside": 1.0, "lambda_mil": 1.0, "lambda_contrast": 0.1, "bag_aggregation": "mean",
        "lambda_tightness": 0.0, "lambda_size": 0.0, "lambda_affinity": 0.0}


def test_every_plane_bag_arm_spells_its_window():
    """The plane-bag window's default changed (voxels -> 2 x 2 x 2 cubes) while runs were cached under keys that hash
    the settings text: an arm that left it to the trainer would reuse a run of the other recipe."""
    from nnunet_fracture.trainers import nnUNetTrainerWeakBBox
    from nnunet_fracture.training.settings import resolve_settings

    bag_arms = [name for name, arm in ARMS.items() if arm.trainer in ("nnUNetTrainerWeakBBox", "nnUNetTrainerWeakSlice")
                and resolve_settings(nnUNetTrainerWeakBBox, arm.settings)[0]["lambda_tightness"] > 0]
    assert {"weak_bbox", "voxel_bags", "slice_plane_bags"} <= set(bag_arms)
    assert [name for name in bag_arms if "tightness_window=" not in ARMS[name].settings] == []


def test_a_workspace_built_from_another_phantom_is_refused(tmp_path):
    """A phantom folder written by another phantom version (or spacing, or contrast) is not reused: its datasets and
    models were built from it, while the run would be cached under today's version."""
    from quality import Workspace
    from quality_results import phantom_version

    ws = Workspace(tmp_path, "smoke", REGIMES["smoke"], results=tmp_path / "results")
    folder = ws.root / "phantom_seed0_5"
    folder.mkdir(parents=True)
    description = {"version": phantom_version(), "spacing": [3.0, 3.0, 3.0], "settings": {"contrast": "standard"}}
    (folder / "phantom.json").write_text(json.dumps(description), encoding="utf-8")
    assert ws.phantom(0, 5) == folder  # today's version, the regime's spacing and contrast: reused as it is

    (folder / "phantom.json").write_text(json.dumps({**description, "version": "1"}), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"phantom_seed0_5/phantom\.json: written with .*'version': '1'.*"
                                         r"remove the workspace .* or pass another --work"):
        ws.phantom(0, 5)
    (folder / "phantom.json").write_text(json.dumps({**description, "spacing": [1.5, 1.5, 1.5]}), encoding="utf-8")
    with pytest.raises(SystemExit, match="spacing"):
        ws.phantom(0, 5)


def test_speck_removal_needs_a_model_trained_on_masks(monkeypatch):
    """``min_component`` scales the training masks' volume: an arm whose model learned from boxes has none."""
    weak = Arm("nnUNetTrainerWeakBBox", labels="box", settings="lambda_tightness=1")
    monkeypatch.setitem(quality_arms.ARMS, "weak_probe", weak)
    monkeypatch.setitem(quality_arms.ARMS, "cleaned_probe", dataclasses.replace(weak, predictions_of="weak_probe",
                                                                              min_component=0.1))
    with pytest.raises(ValueError, match="cleaned_probe: min_component .* trains on box"):
        check_arms()


def test_a_rounds_pseudo_masks_need_rounds_and_a_rule(monkeypatch):
    """``round_pseudo_masks`` scores a self-training round's model by the arm's pseudo-mask rule: without rounds
    or without a rule there is nothing to score."""
    weak = Arm("nnUNetTrainerWeakBBox", labels="box", settings="lambda_tightness=1", pseudo_masks="fixed",
               round_pseudo_masks=True)
    monkeypatch.setitem(quality_arms.ARMS, "no_rounds_probe", weak)
    with pytest.raises(ValueError, match="no_rounds_probe: round_pseudo_masks needs self-training rounds"):
        check_arms()
    monkeypatch.setitem(quality_arms.ARMS, "no_rounds_probe", dataclasses.replace(weak, self_training_rounds=1,
                                                                                   pseudo_masks=None))
    with pytest.raises(ValueError, match="no_rounds_probe: round_pseudo_masks needs .* a pseudo-mask rule"):
        check_arms()


def test_speck_removal_reads_the_labels_its_model_learned_from(tmp_path, monkeypatch):
    """The full-mask dataset for a full-mask model; for a self-training round, the round's dataset of this recipe,
    and a round dataset of another recipe (same seed, same ID) is refused."""
    from quality import SELF_TRAINING_IDS, Workspace
    from quality_results import phantom_version

    ws = Workspace(tmp_path, "smoke", REGIMES["smoke"], results=tmp_path / "results")
    raw = Path(ws.env["nnUNet_raw"])
    monkeypatch.setattr(ws, "dataset", lambda seed, labels: 700 + 10 * seed + {"mask": 0, "box": 1}[labels])
    (raw / "Dataset710_QualityS1Mask").mkdir()
    assert ws.training_labels(ARMS["full_mask_cleaned"], 1) == raw / "Dataset710_QualityS1Mask"

    arm = ARMS["flywheel_cleaned"]
    key = run_key(dataclasses.replace(ARMS[arm.predictions_of], note=""), ws.regime, 0, phantom_version())
    (raw / f"Dataset{SELF_TRAINING_IDS + 1}_QualityS0FwotherrecipeR1").mkdir()
    with pytest.raises(ValueError, match="is not this recipe's"):
        ws.training_labels(arm, 0)
    (raw / f"Dataset{SELF_TRAINING_IDS + 1}_QualityS0FwotherrecipeR1").rmdir()
    (raw / f"Dataset{SELF_TRAINING_IDS + 1}_QualityS0Fw{key}R1").mkdir()
    assert ws.training_labels(arm, 0).name == f"Dataset{SELF_TRAINING_IDS + 1}_QualityS0Fw{key}R1"


def test_clean_masks_removes_specks_by_the_training_median(tmp_path):
    """``clean_masks`` writes the post-processed folder (the threshold a share of the typical training component)
    and reports what the result records of it."""
    import SimpleITK as sitk
    from quality_scoring import clean_masks

    dataset = tmp_path / "Dataset710_Probe"
    (dataset / "labelsTr").mkdir(parents=True)
    (dataset / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "fracture": 1}}))
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0:2, 0:2, 0:2] = 1  # one training fracture of 8 voxels (1 mm^3 each)
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(dataset / "labelsTr" / "a.nii.gz"))
    predictions = tmp_path / "pred"
    predictions.mkdir()
    seg = np.zeros((4, 4, 4), np.uint8)
    seg[0:2, 0:2, 0:2] = 1
    seg[3, 3, 3] = 1  # a speck of 1 voxel: under 0.5 x 8 = 4 mm^3
    sitk.WriteImage(sitk.GetImageFromArray(seg), str(predictions / "c.nii.gz"))
    out = tmp_path / "clean"
    record = clean_masks(predictions, out, dataset, 0.5)
    assert record == {"postprocessing": {"min_volume_mm3": 4.0, "connectivity": 26, "fraction": 0.5,
                                         "typical_component_mm3": 8.0, "components": 1, "components_removed": 1,
                                         "voxels_removed": 1}}
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out / "c.nii.gz"))).sum() == 8
