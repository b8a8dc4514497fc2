"""Speck removal: hand-counted components on tiny label maps, thresholds from a dataset's labels, the staged output
folder, and ``nnunet-fracture postprocess`` on the stock predictions of the session's weak-box model."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.inference.small_components import (clean_prediction_folder, labelled_component_volumes,
                                                        min_volume_from_labels, remove_small_components,
                                                        typical_volume)


def three_components() -> np.ndarray:
    """A 2 x 2 x 2 cube of label 2 (8 voxels), two voxels that touch only at a corner (one 26-connected component
    of 2 voxels) and a lone voxel."""
    seg = np.zeros((6, 6, 6), np.uint8)
    seg[0:2, 0:2, 0:2] = 2
    seg[4, 4, 4] = seg[5, 5, 5] = 1
    seg[0, 5, 0] = 1
    return seg


@pytest.mark.parametrize("min_volume, kept_voxels, removed", [
    (0.0, 11, 0),     # nothing removed
    (2.0, 11, 0),     # a voxel is 2 mm^3: every component reaches it
    (2.5, 10, 1),     # 2 voxels needed: the lone voxel goes
    (4.0, 10, 1),     # the corner pair holds 4 mm^3 exactly and stays
    (6.0, 8, 2),      # 3 voxels needed: only the cube stays
    (16.0, 8, 2),     # the cube holds 16 mm^3 exactly
    (16.1, 0, 3),
])
def test_components_under_the_volume_are_removed(min_volume, kept_voxels, removed):
    seg = three_components()
    out, n = remove_small_components(seg, (1.0, 1.0, 2.0), min_volume)
    assert (np.count_nonzero(out), n) == (kept_voxels, removed)
    assert np.all(out[out > 0] == seg[out > 0])  # labels are kept, nothing is added
    assert np.count_nonzero(seg) == 11  # the input is not changed


def test_bad_arguments_are_refused():
    seg = three_components()
    with pytest.raises(ValueError, match="3D"):
        remove_small_components(seg[0], (1, 1, 1), 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        remove_small_components(seg, (1, 1, 1), -1.0)
    with pytest.raises(ValueError, match="positive"):
        remove_small_components(seg, (1, 0, 1), 1.0)


def write_labels(folder: Path, case: str, labels: np.ndarray, spacing_xyz: tuple) -> None:
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(spacing_xyz)
    sitk.WriteImage(image, str(folder / f"{case}.nii.gz"))


@pytest.fixture
def labelled_dataset(tmp_path: Path) -> Path:
    """Two label files: case a at 1 x 1 x 2 mm (a voxel 2 mm^3) holds a 3-voxel and a 1-voxel fracture and an
    ignore-labelled block; case b at 0.5 mm (0.125 mm^3) holds a 16-voxel fracture."""
    folder = tmp_path / "Dataset777_Specks"
    (folder / "labelsTr").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "fracture": 1, "ignore": 2},
                                                     "file_ending": ".nii.gz"}))
    a = np.zeros((5, 5, 5), np.uint8)
    a[0, 0, 0:3] = 1
    a[4, 4, 4] = 1
    a[2:4, 2:4, 2:4] = 2  # ignore: not a fracture
    write_labels(folder / "labelsTr", "a", a, (1.0, 1.0, 2.0))
    b = np.zeros((5, 5, 5), np.uint8)
    b[0:2, 0:2, 0:4] = 1
    write_labels(folder / "labelsTr", "b", b, (0.5, 0.5, 0.5))
    return folder


def test_labelled_volumes_in_mm3_without_the_ignore_label(labelled_dataset):
    assert sorted(labelled_component_volumes(labelled_dataset)) == [2.0, 2.0, 6.0]


@pytest.mark.parametrize("volumes, typical", [
    ([5.0], 5.0),
    ([2.0, 2.0, 6.0], 6.0),                # cumulative 2, 4, 10: half (5) is reached by the 6
    ([1.0] * 40 + [300.0, 500.0], 500.0),  # forty specks hardly count: 340 of 840 below the 500
    ([4.0, 4.0], 4.0),
    ([1.0, 3.0], 3.0),                     # half (2) is reached by the 3, not by the 1
])
def test_typical_volume_is_the_volume_weighted_median(volumes, typical):
    assert typical_volume(volumes) == typical


def test_threshold_is_a_share_of_the_typical_training_component(labelled_dataset):
    record = min_volume_from_labels(labelled_dataset, fraction=0.5)
    assert record["typical_component_mm3"] == 6.0 and record["components"] == 3
    assert record["min_volume_mm3"] == 3.0
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        min_volume_from_labels(labelled_dataset, fraction=0)


def test_a_dataset_without_fractures_or_labels_says_what_to_do(labelled_dataset, tmp_path):
    for f in (labelled_dataset / "labelsTr").iterdir():
        write_labels(labelled_dataset / "labelsTr", f.name[:-7], np.zeros((3, 3, 3), np.uint8), (1, 1, 1))
    with pytest.raises(ValueError, match="--min-volume"):
        min_volume_from_labels(labelled_dataset)
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        labelled_component_volumes(tmp_path / "nowhere")


@pytest.fixture
def prediction_folder(tmp_path: Path) -> Path:
    """An nnUNetv2_predict-like folder: one segmentation (three_components at 1 x 1 x 2 mm), its npz, dataset.json."""
    folder = tmp_path / "pred"
    folder.mkdir()
    write_labels(folder, "case", three_components(), (2.0, 1.0, 1.0))  # x, y, z: the array's last axis is 2 mm
    np.savez_compressed(folder / "case.npz", probabilities=np.zeros((2, 6, 6, 6), np.float32))
    (folder / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz"}))
    return folder


def test_a_cleaned_folder_keeps_everything_but_the_specks(prediction_folder, tmp_path):
    out = tmp_path / "clean"
    record = clean_prediction_folder(prediction_folder, out, 6.0, provenance={"fraction": 0.1})
    assert record["cases"] == {"case": {"components_removed": 2, "voxels_removed": 3}}
    assert record["fraction"] == 0.1 and json.loads((out / "postprocessing.json").read_text()) == record
    cleaned = sitk.ReadImage(str(out / "case.nii.gz"))
    assert cleaned.GetSpacing() == (2.0, 1.0, 1.0)
    assert np.count_nonzero(sitk.GetArrayFromImage(cleaned)) == 8
    assert (out / "case.npz").read_bytes() == (prediction_folder / "case.npz").read_bytes()
    assert (out / "dataset.json").is_file()
    with pytest.raises(FileExistsError):  # never replaced without overwrite
        clean_prediction_folder(prediction_folder, out, 0.0)
    clean_prediction_folder(prediction_folder, out, 0.0, overwrite=True)
    assert np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case.nii.gz")))) == 11
    with pytest.raises(FileNotFoundError, match="nnUNetv2_predict"):
        clean_prediction_folder(tmp_path / "missing", tmp_path / "x", 1.0)
    assert not (tmp_path / "x").exists()


def test_postprocess_verb_on_stock_predictions(weak_box_model, labelled_dataset, tmp_path, capsys):
    from nnunet_fracture.cli import main

    predictions = tmp_path / "pred"  # the session's stock nnUNetv2_predict output (tests/weak_box_model.py)
    shutil.copytree(weak_box_model.predictions, predictions)
    out = tmp_path / "clean"
    assert main(["postprocess", str(predictions), "--dataset", str(labelled_dataset), "--fraction", "1",
                 "--out", str(out)]) == 0
    record = json.loads((out / "postprocessing.json").read_text())
    assert record["min_volume_mm3"] == 6.0 and record["typical_component_mm3"] == 6.0
    assert sorted(record["cases"]) == sorted(p.name[:-4] for p in predictions.glob("*.npz"))
    from scipy import ndimage

    for segmentation in predictions.glob("*.nii.gz"):
        image = sitk.ReadImage(str(out / segmentation.name))
        before = sitk.GetArrayFromImage(sitk.ReadImage(str(segmentation))) > 0
        after = sitk.GetArrayFromImage(image) > 0
        min_voxels = np.ceil(6.0 / np.prod(image.GetSpacing()))
        components, n = ndimage.label(before, structure=np.ones((3, 3, 3)))  # 26-connected, counted by scipy
        sizes = ndimage.sum(before, components, range(1, n + 1))
        expected = np.isin(components, 1 + np.flatnonzero(sizes >= min_voxels))
        assert np.array_equal(after, expected)
        assert record["cases"][segmentation.name[:-7]] == {
            "components_removed": int(np.sum(sizes < min_voxels)),
            "voxels_removed": int(before.sum() - after.sum())}
    assert "removed" in capsys.readouterr().out
    assert main(["postprocess", str(predictions), "--min-volume", "1", "--fraction", "0.2",
                 "--out", str(tmp_path / "y")]) == 1
    assert "--fraction" in capsys.readouterr().err and not (tmp_path / "y").exists()
