"""evaluate_folder end to end on tiny files: slice, detection, vertebra and box levels, and their errors."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from matplotlib.image import imread
from sklearn.metrics import average_precision_score, roc_auc_score

from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.box_geometry import rasterise_boxes
from nnunet_fracture.dataset_conversion.case import VoxelBox
from nnunet_fracture.evaluation.box_metrics import BoxStats
from nnunet_fracture.evaluation.report import evaluate_folder

SHAPE = (4, 5, 6)  # z, y, x; ITK size (6, 5, 4)
SIZE = (6, 5, 4)


def _write(array, path, spacing=(1.0, 1.0, 2.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def _cases():
    """Three cases: c1 fractured and found, c2 fracture-free with a false positive, c3 fractured and missed."""
    p1 = np.zeros(SHAPE, np.float32)
    gt1 = np.zeros(SHAPE, np.uint8)
    gt1[1, 1:3, 1:3] = 1  # 4 voxels
    p1[gt1 == 1] = 0.8
    p1[3, 4, 5] = 0.4  # inside box 2 (not hit) and outside every vertebra
    p1[0, 0, 0] = 0.6  # outside every box
    p2 = np.full(SHAPE, 0.1, np.float32)
    p2[2, 2, 2] = 0.9
    gt2 = np.zeros(SHAPE, np.uint8)
    p3 = np.zeros(SHAPE, np.float32)
    gt3 = np.zeros(SHAPE, np.uint8)
    gt3[3, 0, 0] = 1
    p3[3, 0, 0] = 0.3
    boxes = {"c1": [{"box_id": 1, "lo": [1, 1, 1], "hi": [2, 2, 1]}, {"box_id": 2, "lo": [5, 4, 3], "hi": [5, 4, 3]}],
             "c2": [], "c3": [{"box_id": 1, "lo": [0, 0, 3], "hi": [0, 0, 3]}]}
    return {"c1": (gt1, p1), "c2": (gt2, p2), "c3": (gt3, p3)}, boxes


@pytest.fixture
def levels(tmp_path):
    cases, boxes = _cases()
    vertebrae = np.zeros(SHAPE, np.uint16)
    vertebrae[0:2, :, 0:5] = 20  # L1 on z 0-1
    vertebrae[2:4, :, 0:5] = 21  # L2 on z 2-3; column x = 5 belongs to no vertebra
    for case, (gt, p) in cases.items():
        _write(gt, tmp_path / "gt" / f"{case}.nii.gz")
        _write((p >= 0.5).astype(np.uint8), tmp_path / "pred" / f"{case}.nii.gz")
        np.savez_compressed(tmp_path / "pred" / f"{case}.npz", probabilities=p[None])  # one sigmoid channel
        _write(vertebrae, tmp_path / "vertebrae" / f"{case}.nii.gz")
        numbers = rasterise_boxes([VoxelBox(tuple(b["lo"]), tuple(b["hi"])) for b in boxes[case]], SIZE, "box")
        _write(numbers, tmp_path / "labelsTr" / f"{case}.nii.gz")
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    return tmp_path


def _run(folder, **kwargs):
    summary = evaluate_folder(folder / "pred", folder / "gt", folder / "out", overwrite=True, **kwargs)
    return summary, pd.read_csv(folder / "out" / "metrics.csv").set_index("case")


def test_case_level_detection_by_hand_and_like_sklearn(levels):
    summary, table = _run(levels)
    case = summary["detection"]["case"]
    assert summary["detection"]["score"] == "probability"
    assert table["detection_score"].tolist() == pytest.approx([0.8, 0.9, 0.3])
    # fractured c1 (0.8) and c3 (0.3) both rank below fracture-free c2 (0.9): AUC 0;
    # ranking 0.9- 0.8+ 0.3+: AP = 1/2 * 1/2 + 1/2 * 2/3
    assert case["roc_auc"] == pytest.approx(0.0) and case["average_precision"] == pytest.approx(7 / 12)
    labels, scores = [True, False, True], [0.8, 0.9, 0.3]
    assert case["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert case["average_precision"] == pytest.approx(average_precision_score(labels, scores))
    assert (case["tp"], case["fp"], case["fn"], case["tn"]) == (1, 1, 1, 0)
    assert case["sensitivity"] == 0.5 and case["specificity"] == 0.0
    assert "vertebra" not in summary["detection"] and "boxes" not in summary
    assert not (levels / "out" / "vertebrae.csv").exists()
    png = imread(levels / "out" / "figures" / "detection_roc.png")
    assert png.shape[0] > 100 and png[..., :3].std() > 0.05


def test_slice_columns_and_empty_conventions(levels):
    summary, table = _run(levels)
    # c1: prediction = gt + (0,0,0); axial z0: pred only -> 0, z1: exact -> 1 => 1/2
    assert table.loc["c1", "slice_dice_axial"] == pytest.approx(0.5)
    # c2 (empty GT, one predicted voxel) and c3 (one GT voxel, empty prediction): every non-empty slice scores 0
    for case in ("c2", "c3"):
        for axis in ("axial", "coronal", "sagittal"):
            assert table.loc[case, f"slice_dice_{axis}"] == 0.0
    assert table.loc["c3", "dice"] == 0.0 and table.loc["c3", "pred_voxels"] == 0
    axial = summary["slices"]["axial"]
    assert axial["n_items"] == 12 and axial["n_positive"] == 2  # 3 cases x 4 slices; c1 z1, c3 z3
    assert axial["n_dice_slices"] == 4  # c1 z0, z1; c2 z2; c3 z3
    assert axial["mean_slice_dice"] == pytest.approx(1 / 4)
    assert summary["slices"]["sagittal"]["n_items"] == 18 and summary["slices"]["coronal"]["axis"] == 1


def test_vertebra_level_and_csv(levels):
    summary, table = _run(levels, vertebrae=levels / "vertebrae")
    vertebrae = pd.read_csv(levels / "out" / "vertebrae.csv")
    assert list(vertebrae.columns) == ["case", "vertebra", "vertebra_name", "voxels", "fracture_voxels", "score",
                                       "label"]
    assert vertebrae["score"].tolist() == pytest.approx([0.8, 0.0, 0.1, 0.9, 0.0, 0.3])
    assert vertebrae["label"].tolist() == [True, False, False, False, False, True]
    assert vertebrae["vertebra_name"].tolist() == ["L1", "L2"] * 3
    # fractured vertebrae score 0.8 and 0.3; fracture-free 0, 0.1, 0.9, 0: each beats 3 of 4 -> 6/8
    block = summary["detection"]["vertebra"]
    assert block["roc_auc"] == pytest.approx(0.75)
    assert block["roc_auc"] == pytest.approx(roc_auc_score(vertebrae["label"], vertebrae["score"]))
    assert block["average_precision"] == pytest.approx(average_precision_score(vertebrae["label"],
                                                                               vertebrae["score"]))
    assert block["min_fracture_voxels"] == 1 and block["fracture_voxels_outside_vertebrae"] == 0
    assert table["vertebrae"].tolist() == [2, 2, 2] and table["fractured_vertebrae"].tolist() == [1, 0, 1]
    strict, _ = _run(levels, vertebrae=levels / "vertebrae", vertebra_min_voxels=2)
    assert strict["detection"]["vertebra"]["n_positive"] == 1  # c3's single fracture voxel is not enough


@pytest.mark.parametrize("source", ["boxes.json", "labelsTr"])
def test_box_numbers_by_hand(levels, source):
    summary, table = _run(levels, boxes=levels / source)
    # c1: mass inside 4 * 0.8 + 0.4 of 4.2; box 1 hit (0.8), box 2 not (0.4); 1 of 115 outside voxels >= 0.5
    assert table.loc["c1", "mass_inside_fraction"] == pytest.approx(3.6 / 4.2)
    assert table.loc["c1", "box_hit_rate"] == 0.5 and table.loc["c1", "boxes"] == 2
    assert table.loc["c1", "outside_fp_rate"] == pytest.approx(1 / 115)
    # c2: no box -> no mass inside, hit rate undefined; 1 of 120 voxels >= 0.5
    assert table.loc["c2", "mass_inside_fraction"] == 0.0 and math.isnan(table.loc["c2", "box_hit_rate"])
    assert table.loc["c2", "outside_fp_rate"] == pytest.approx(1 / 120)
    # c3: all mass inside its box, which is missed (0.3 < 0.5)
    assert table.loc["c3", "mass_inside_fraction"] == 1.0 and table.loc["c3", "box_hit_rate"] == 0.0
    boxes = summary["boxes"]
    assert boxes["mass_inside"] == pytest.approx(3.9) and boxes["mass_total"] == pytest.approx(17.3)
    assert boxes["mass_inside_fraction"] == pytest.approx(3.9 / 17.3)
    assert (boxes["boxes_hit"], boxes["boxes_total"]) == (1, 3) and boxes["box_hit_rate"] == pytest.approx(1 / 3)
    assert (boxes["outside_positive"], boxes["outside_total"]) == (2, 354)
    assert boxes["score"] == "probability" and boxes["threshold"] == 0.5 and boxes["source"].endswith(source)
    # the same as summing BoxStats over the cases
    cases, _ = _cases()
    pooled = BoxStats()
    for case, (_, p) in cases.items():
        numbers = sitk.GetArrayFromImage(sitk.ReadImage(str(levels / "labelsTr" / f"{case}.nii.gz")))
        pooled = pooled + BoxStats.from_arrays(p, numbers)
    assert boxes["mass_inside_fraction"] == pytest.approx(pooled.mass_inside_fraction)


def test_threshold_moves_every_operating_point(levels):
    summary, table = _run(levels, boxes=levels / "boxes.json", threshold=0.25)
    assert summary["threshold"] == 0.25 and "pooled_at_probability_0.25" in summary
    assert table.loc["c3", "dice_at_0.25"] == 1.0 and table.loc["c3", "recall_at_0.25"] == 1.0
    assert summary["detection"]["case"]["sensitivity"] == 1.0  # 0.3 >= 0.25 now
    assert summary["boxes"]["boxes_hit"] == 3  # 0.8, 0.4 and 0.3 all reach 0.25
    assert table.loc["c1", "outside_fp_rate"] == pytest.approx(1 / 115)  # the 0.6 voxel only


def test_without_all_probabilities_scores_come_from_masks(levels):
    (levels / "pred" / "c2.npz").unlink()
    summary, table = _run(levels, boxes=levels / "boxes.json", vertebrae=levels / "vertebrae")
    assert summary["detection"]["score"] == "mask" and summary["boxes"]["score"] == "mask"
    # c1 predicted (1, fractured), c2 predicted (1, fracture-free), c3 nothing (0, fractured): AUC (1/2 + 0) / 2
    assert table["detection_score"].tolist() == [1.0, 1.0, 0.0]
    assert summary["detection"]["case"]["roc_auc"] == pytest.approx(0.25)
    # the voxel threshold-free block still uses the cases that have probabilities
    assert summary["pooled_threshold_free"]["positive_voxels"] == 5
    # masks as 0/1 probabilities: c1 predicts 5 voxels, 4 inside box 1
    assert table.loc["c1", "mass_inside_fraction"] == pytest.approx(4 / 5)


def test_only_fracture_free_cases_give_null_auc_with_note(tmp_path):
    for case in ("n1", "n2"):
        _write(np.zeros(SHAPE, np.uint8), tmp_path / "gt" / f"{case}.nii.gz")
        _write(np.zeros(SHAPE, np.uint8), tmp_path / "pred" / f"{case}.nii.gz")
    summary, table = _run(tmp_path)
    case = summary["detection"]["case"]
    assert case["roc_auc"] is None and case["average_precision"] is None and "only fracture-free" in case["note"]
    assert case["specificity"] == 1.0 and case["sensitivity"] is None
    assert (table["slice_dice_axial"] == 1.0).all()  # empty on empty
    assert summary["slices"]["axial"]["mean_slice_dice"] is None  # no slice with anything on it
    assert not (tmp_path / "out" / "figures" / "detection_roc.png").exists()
    json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))  # valid JSON: no NaN


def test_cli_passes_the_new_options(levels, capsys):
    assert main(["evaluate", str(levels / "pred"), str(levels / "gt"), "--out", str(levels / "o"),
                 "--boxes", str(levels / "boxes.json"), "--vertebrae", str(levels / "vertebrae"),
                 "--threshold", "0.25", "--vertebra-min-voxels", "2"]) == 0
    assert "case-level AUC 0.000" in capsys.readouterr().out
    summary = json.loads((levels / "o" / "summary.json").read_text(encoding="utf-8"))
    assert summary["threshold"] == 0.25 and summary["detection"]["vertebra"]["min_fracture_voxels"] == 2
    assert summary["boxes"]["boxes_hit"] == 3
    assert main(["evaluate", str(levels / "pred"), str(levels / "gt"), "--out", str(levels / "o"),
                 "--threshold", "0"]) == 1
    assert "threshold must be in (0, 1]" in capsys.readouterr().err


# ---- bad input -------------------------------------------------------------------------------------------------

def test_case_missing_from_boxes_json(levels):
    boxes = json.loads((levels / "boxes.json").read_text(encoding="utf-8"))
    del boxes["c2"]
    (levels / "boxes.json").write_text(json.dumps(boxes))
    with pytest.raises(ValueError, match=r"1 case\(s\) are not listed in .*boxes\.json: c2\. Fix"):
        _run(levels, boxes=levels / "boxes.json")


def test_case_missing_from_box_maps(levels):
    (levels / "labelsTr" / "c3.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"no box-number map .*labelsTr: c3\. Fix"):
        _run(levels, boxes=levels / "labelsTr")


def test_box_outside_image_names_case_and_file(levels):
    boxes = json.loads((levels / "boxes.json").read_text(encoding="utf-8"))
    boxes["c3"][0]["hi"] = [0, 0, 4]  # k runs 0..3
    (levels / "boxes.json").write_text(json.dumps(boxes))
    with pytest.raises(ValueError, match=r"case c3: .*boxes\.json: box .* is not inside the image.*Fix"):
        _run(levels, boxes=levels / "boxes.json")


def test_malformed_box_entry(levels):
    boxes = json.loads((levels / "boxes.json").read_text(encoding="utf-8"))
    boxes["c1"][1] = {"box_id": 2, "lo": [1, 2]}
    (levels / "boxes.json").write_text(json.dumps(boxes))
    with pytest.raises(ValueError, match=r"case c1: box 2 in .*needs 'lo' and 'hi'"):
        _run(levels, boxes=levels / "boxes.json")


def test_boxes_path_missing_or_not_json(levels):
    with pytest.raises(FileNotFoundError, match="boxes .*nope.json does not exist"):
        _run(levels, boxes=levels / "nope.json")
    (levels / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        _run(levels, boxes=levels / "bad.json")


def test_box_map_geometry_mismatch(levels):
    _write(np.zeros(SHAPE, np.uint8), levels / "labelsTr" / "c2.nii.gz", spacing=(1.0, 1.0, 3.0))
    with pytest.raises(ValueError, match=r"case c2: box-number map .*c2\.nii\.gz has spacing.*Fix: use the labelsTr"):
        _run(levels, boxes=levels / "labelsTr")


def test_vertebra_map_geometry_mismatch(levels):
    _write(np.zeros((4, 5, 7), np.uint16), levels / "vertebrae" / "c1.nii.gz")
    with pytest.raises(ValueError, match=r"case c1: vertebra map .*c1\.nii\.gz has size.*Fix: .*nearest-neighbour"):
        _run(levels, vertebrae=levels / "vertebrae")


def test_vertebra_map_missing_or_not_integer(levels):
    (levels / "vertebrae" / "c2.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"no vertebra map .*: c2\. Fix"):
        _run(levels, vertebrae=levels / "vertebrae")
    _write(np.zeros(SHAPE, np.float32), levels / "vertebrae" / "c2.nii.gz")
    with pytest.raises(ValueError, match=r"case c2: vertebra map .* holds float32"):
        _run(levels, vertebrae=levels / "vertebrae")
    with pytest.raises(FileNotFoundError, match="vertebra folder"):
        _run(levels, vertebrae=levels / "missing")


def test_bad_settings(levels):
    with pytest.raises(ValueError, match="threshold"):
        _run(levels, threshold=1.5)
    with pytest.raises(ValueError, match="whole number >= 1"):
        _run(levels, vertebra_min_voxels=0)


def test_float32_probabilities_meet_the_threshold_in_float32(levels):
    # a float32 0.9 is 0.899999976...: like the voxel histogram, every level counts it as >= 0.9
    cases, _ = _cases()
    p1 = cases["c1"][1].copy()
    p1[p1 == np.float32(0.8)] = np.float32(0.9)
    np.savez_compressed(levels / "pred" / "c1.npz", probabilities=p1[None])
    (levels / "pred" / "c2.npz").unlink()  # c2's 0.9 would count too; leave only c1 and c3 with probabilities
    _write(np.zeros(SHAPE, np.uint8), levels / "pred" / "c2.nii.gz")
    np.savez_compressed(levels / "pred" / "c2.npz", probabilities=np.zeros((1,) + SHAPE, np.float32))
    summary, table = _run(levels, boxes=levels / "boxes.json", vertebrae=levels / "vertebrae", threshold=0.9)
    assert table.loc["c1", "dice_at_0.9"] == 1.0
    assert summary["detection"]["case"]["tp"] == 1 and summary["detection"]["vertebra"]["tp"] == 1
    assert summary["slices"]["axial"]["tp"] == 1
    assert table.loc["c1", "box_hit_rate"] == 0.5  # box 1 reaches 0.9


def test_labels_of_a_mask_dataset_are_not_box_numbers(levels):
    (levels / "dataset.json").write_text(json.dumps({"nnunet_fracture": {"weak": "mask"}}))
    with pytest.raises(ValueError, match=r"'--weak mask' dataset .*Fix: pass that dataset's boxes\.json"):
        _run(levels, boxes=levels / "labelsTr")
    (levels / "dataset.json").write_text(json.dumps({"nnunet_fracture": {"weak": "box"}}))
    summary, _ = _run(levels, boxes=levels / "labelsTr")
    assert summary["boxes"]["boxes_total"] == 3
