import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from matplotlib.image import imread

from nnunet_fracture.cli import main
from nnunet_fracture.evaluation.report import evaluate_folder

SHAPE = (6, 10, 12)  # z, y, x


def _write(array, path, spacing=(1.0, 1.0, 2.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-5.0, 3.0, 10.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


@pytest.fixture
def folders(tmp_path):
    gt_a = np.zeros(SHAPE, np.uint8)
    gt_a[2:4, 3:6, 4:8] = 1  # 2*3*4 = 24 voxels
    pred_a = np.zeros(SHAPE, np.uint8)
    pred_a[2:4, 3:6, 6:10] = 1  # overlap x 6..7 -> 2*3*2 = 12 voxels; pred 24
    gt_b = np.zeros(SHAPE, np.uint8)  # fracture-free case
    pred_b = np.zeros(SHAPE, np.uint8)
    pred_b[0, 0, 0] = 1  # one false-positive voxel
    probs_a = np.zeros((2,) + SHAPE, np.float32)
    probs_a[1] = 0.1
    probs_a[1][pred_a == 1] = 0.9
    probs_a[0] = 1 - probs_a[1]
    for name, gt, pred in (("a", gt_a, pred_a), ("b", gt_b, pred_b)):
        _write(gt, tmp_path / "gt" / f"{name}.nii.gz")
        _write(pred, tmp_path / "pred" / f"{name}.nii.gz")
        ct = np.full(SHAPE, 40, np.int16)
        _write(ct, tmp_path / "images" / f"{name}_0000.nii.gz")
    np.savez_compressed(tmp_path / "pred" / "a.npz", probabilities=probs_a)
    return tmp_path


def test_metrics_by_hand(folders):
    summary = evaluate_folder(folders / "pred", folders / "gt", folders / "out")
    table = pd.read_csv(folders / "out" / "metrics.csv").set_index("case")
    assert table.loc["a", "tp"] == 12 and table.loc["a", "fp"] == 12 and table.loc["a", "fn"] == 12
    assert table.loc["a", "dice"] == pytest.approx(0.5)
    assert table.loc["a", "dice_at_0.5"] == pytest.approx(0.5)
    assert table.loc["a", "max_probability"] == pytest.approx(0.9)
    assert table.loc["b", "dice"] == 0.0  # empty ground truth, non-empty prediction
    assert summary["mean_dice"] == pytest.approx(0.25)
    assert summary["mean_dice_fractured_cases"] == pytest.approx(0.5)
    assert summary["pooled"]["dice"] == pytest.approx(24 / (24 + 13 + 12))
    assert summary["false_positive_cases"] == 1
    assert json.loads((folders / "out" / "summary.json").read_text(encoding="utf-8"))["n_cases"] == 2


def test_overlay_is_hot_where_probability_is_high(folders):
    evaluate_folder(folders / "pred", folders / "gt", folders / "out", images=folders / "images")
    png = imread(folders / "out" / "figures" / "a_overlay.png")
    assert png.shape[0] > 100 and png[..., :3].std() > 0.05  # not blank
    # the heat map (inferno) draws warm, saturated pixels: red clearly above blue somewhere
    warm = (png[..., 0] - png[..., 2]) > 0.3
    assert warm.sum() > 50
    assert (folders / "out" / "figures" / "b_overlay.png").is_file()


def test_overlay_of_a_mask_folder_outlines_the_prediction(folders):
    """Pseudo-masks come without probabilities: the judged mask is drawn (magenta, dashed) beside the truth."""
    (folders / "pred" / "a.npz").unlink()
    evaluate_folder(folders / "pred", folders / "gt", folders / "out", images=folders / "images")
    png = imread(folders / "out" / "figures" / "a_overlay.png")[..., :3]
    magenta = (png[..., 0] > 0.8) & (png[..., 1] < 0.3) & (png[..., 2] > 0.8)
    green = (png[..., 1] > 0.8) & (png[..., 0] < 0.3) & (png[..., 2] < 0.3)
    assert magenta.sum() > 50 and green.sum() > 50  # both outlines (and their legend entries)
    # the prediction lies right of the truth (x 6..9 against 4..7): its outline's pixels reach further right
    in_axial = np.s_[:, : png.shape[1] // 2]
    assert np.nonzero(magenta[in_axial])[1].max() > np.nonzero(green[in_axial])[1].max()


def test_missing_prediction_names_case(folders):
    (folders / "pred" / "b.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="b"):
        evaluate_folder(folders / "pred", folders / "gt", folders / "out")


def test_prediction_without_ground_truth_is_an_error_unless_allowed(folders):
    (folders / "gt" / "b.nii.gz").unlink()  # b, the fracture-free case, was predicted but has no ground truth
    with pytest.raises(FileNotFoundError, match=r"1 predicted case\(s\) in .* have no ground truth .*: b\. .*"
                                                r"--allow-missing"):
        evaluate_folder(folders / "pred", folders / "gt", folders / "out")
    summary = evaluate_folder(folders / "pred", folders / "gt", folders / "out", allow_missing=True)
    assert summary["n_cases"] == 1 and summary["predictions_without_ground_truth"] == ["b"]
    assert main(["evaluate", str(folders / "pred"), str(folders / "gt"), "--out", str(folders / "cli")]) == 1


def test_geometry_mismatch_names_case_and_file(folders):
    _write(np.zeros(SHAPE, np.uint8), folders / "pred" / "a.nii.gz", spacing=(1.0, 1.0, 3.0))
    with pytest.raises(ValueError, match=r"case a: prediction .*a\.nii\.gz has spacing"):
        evaluate_folder(folders / "pred", folders / "gt", folders / "out")


def test_probabilities_out_of_range(folders):
    bad = np.zeros((2,) + SHAPE, np.float32)
    bad[1, 0, 0, 0] = 1.5
    np.savez_compressed(folders / "pred" / "a.npz", probabilities=bad)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        evaluate_folder(folders / "pred", folders / "gt", folders / "out")


def test_cli_reports_error_without_traceback(folders, capsys):
    assert main(["evaluate", str(folders / "nope"), str(folders / "gt"), "--out", str(folders / "o")]) == 1
    assert "prediction folder" in capsys.readouterr().err
    assert main(["evaluate", str(folders / "pred"), str(folders / "gt"), "--out", str(folders / "o")]) == 0


def test_threshold_free_metrics_by_hand(folders):
    # case a: 720 voxels, 24 fracture; p = 0.9 on the 24 predicted voxels (12 of them fracture), 0.1 elsewhere.
    # threshold 0.9: TP 12, FP 12 (R 1/2, P 1/2); threshold 0.1: TP 24, FP 696 (R 1, P 24/720)
    # AP = 1/2 * 1/2 + 1/2 * 24/720; ROC: (0,0) -> (12/696, 1/2) -> (1, 1), area 516/696
    # best F1 at 0.9 (ties go to the highest threshold): F1 = Dice = 1/2, IoU 1/3
    summary = evaluate_folder(folders / "pred", folders / "gt", folders / "out")
    table = pd.read_csv(folders / "out" / "metrics.csv").set_index("case")
    ap, auc = 0.25 + 0.5 * 24 / 720, 516 / 696
    assert table.loc["a", "pr_auc"] == pytest.approx(ap)
    assert table.loc["a", "roc_auc"] == pytest.approx(auc)
    assert table.loc["a", "best_threshold"] == pytest.approx(0.9)
    assert table.loc["a", "dice_at_best"] == pytest.approx(0.5) and table.loc["a", "f1_at_best"] == pytest.approx(0.5)
    assert table.loc["a", "iou_at_best"] == pytest.approx(1 / 3)
    assert table.loc["a", "precision_at_best"] == pytest.approx(0.5)
    assert table.loc["a", "recall_at_best"] == pytest.approx(0.5)
    assert np.isnan(table.loc["b", "pr_auc"]) and np.isnan(table.loc["b", "best_threshold"])  # no probabilities
    pooled = json.loads((folders / "out" / "summary.json").read_text(encoding="utf-8"))["pooled_threshold_free"]
    assert pooled == summary["pooled_threshold_free"]
    assert pooled["pr_auc"] == pytest.approx(ap) and pooled["roc_auc"] == pytest.approx(auc)
    best = pooled["best_threshold"]
    assert best["threshold"] == pytest.approx(0.9) and best["dice"] == pytest.approx(0.5)
    assert best["iou"] == pytest.approx(1 / 3) and best["precision"] == pytest.approx(0.5)
    assert best["recall"] == pytest.approx(0.5) and best["f1"] == pytest.approx(0.5)
    assert pooled["n_bins"] > 1000 and pooled["positive_voxels"] == 24 and pooled["negative_voxels"] == 696
    for name in ("pr_curve.png", "probability_histogram.png"):
        png = imread(folders / "out" / "figures" / name)
        assert png.shape[0] > 100 and png[..., :3].std() > 0.05, name  # not blank


def test_no_probabilities_no_threshold_free_block(folders):
    (folders / "pred" / "a.npz").unlink()
    summary = evaluate_folder(folders / "pred", folders / "gt", folders / "out")
    assert "pooled_threshold_free" not in summary
    assert "pr_auc" not in pd.read_csv(folders / "out" / "metrics.csv").columns
    assert not (folders / "out" / "figures" / "pr_curve.png").exists()


def test_overlay_focus_is_inside_the_largest_fracture():
    from nnunet_fracture.visualization.evaluation_figures import focus_point

    gt = np.zeros((20, 5, 5), bool)
    gt[1:3, 1:3, 1:3] = True  # 8 voxels
    gt[14:18, 1:4, 1:4] = True  # 36 voxels: the focus; the centroid of both (z about 12.4) cuts neither
    z, y, x = focus_point(gt, None)
    assert gt[z, y, x] and 14 <= z < 18


def test_a_report_is_written_whole_and_replaced_only_with_overwrite(folders, monkeypatch):
    """An old report's vertebrae.csv and overlays used to survive a new run, and a failure on the last case left a
    half-written report."""
    import nnunet_fracture.evaluation.report as report

    out = folders / "out"
    evaluate_folder(folders / "pred", folders / "gt", out, images=folders / "images")
    (out / "vertebrae.csv").write_text("stale")
    with pytest.raises(FileExistsError, match=r"exists and is not empty\. Fix: pass --overwrite"):
        evaluate_folder(folders / "pred", folders / "gt", out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def fail_on_b(*args, **kwargs):
        if "b:" in args[4]:
            raise RuntimeError("drawing failed on the last case")

    monkeypatch.setattr(report, "overlay_figure", fail_on_b)
    with pytest.raises(RuntimeError, match="last case"):
        evaluate_folder(folders / "pred", folders / "gt", out, images=folders / "images", overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the old report, untouched
    assert not [p for p in folders.iterdir() if p.name.startswith(".out")]  # no staging folder left
    monkeypatch.undo()
    evaluate_folder(folders / "pred", folders / "gt", out, overwrite=True)
    assert not (out / "vertebrae.csv").exists() and not (out / "figures" / "a_overlay.png").exists()
    with pytest.raises(ValueError, match="is or contains the input"):
        evaluate_folder(folders / "pred", folders / "gt", folders, overwrite=True)
