"""benchmarks/in_box_by_kind.py: pseudo-mask Dice per fracture kind, pooled over each kind's boxes, by hand."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from in_box_by_kind import by_kind, main  # noqa: E402


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(path))


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    raw, phantom, masks = tmp_path / "raw", tmp_path / "phantom", tmp_path / "pseudo"
    truth, called = np.zeros((4, 6, 8)), np.zeros((4, 6, 8))  # (k, j, i)
    truth[1, 1, 1:4] = 1  # a band box: i 0..4, j 0..2, k 0..2 - 3 true voxels
    called[1, 1, 2:5] = 1  # 2 of them called, and 1 voxel beside them
    truth[1, 4, 6] = 1  # a cleft box: i 6..7, j 4..5, k 1..1 - 1 true voxel, missed
    called[0, 0, 7] = 1  # outside every box: not counted
    _write(raw / "groundTruthTr" / "c0.nii.gz", truth)
    _write(masks / "masks" / "c0.nii.gz", called)
    _write(raw / "groundTruthTr" / "c1.nii.gz", np.zeros((4, 6, 8)))
    boxes = [{"lo": [0, 0, 0], "hi": [4, 2, 2]}, {"lo": [6, 4, 1], "hi": [7, 5, 1]}]  # voxel (i, j, k), inclusive
    (raw / "boxes.json").write_text(json.dumps({"c0": boxes, "c1": []}))
    phantom.mkdir()
    (phantom / "phantom.json").write_text(json.dumps({"cases": [
        {"case_id": "c0", "fractures": [{"type": "wedge"}, {"type": "cleft"}]}, {"case_id": "c1", "fractures": []}]}))
    return raw, phantom, masks


def test_dice_precision_and_recall_per_kind_by_hand(folders):
    raw, phantom, masks = folders
    result = by_kind(masks, raw, phantom)
    assert result["wedge"] == pytest.approx({"dice": 2 * 2 / (3 + 3), "precision": 2 / 3, "recall": 2 / 3, "boxes": 1})
    assert result["cleft"] == {"dice": 0.0, "precision": None, "recall": 0.0, "boxes": 1}


def test_the_command_prints_a_row_per_kind_and_writes_json(folders, capsys, tmp_path):
    raw, phantom, masks = folders
    before = sorted(p.name for p in masks.rglob("*"))
    assert main([str(masks), "--raw", str(raw), "--phantom", str(phantom), "--json", str(tmp_path / "k.json")]) == 0
    out = capsys.readouterr().out
    assert "| pseudo | wedge | 1 | 0.667 | 0.667 | 0.667 |" in out
    assert "| pseudo | cleft | 1 | 0.000 | - | 0.000 |" in out
    assert json.loads((tmp_path / "k.json").read_text())[str(masks)]["wedge"]["boxes"] == 1
    assert sorted(p.name for p in masks.rglob("*")) == before  # nothing written into the scored folder


def test_a_prediction_folder_is_read_as_its_own_masks(folders):
    raw, phantom, masks = folders
    predicted = masks.parent / "predicted"
    predicted.mkdir()
    (masks / "masks" / "c0.nii.gz").rename(predicted / "c0.nii.gz")
    assert by_kind(predicted, raw, phantom)["wedge"]["dice"] == pytest.approx(2 / 3)


def test_a_folder_without_masks_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "no masks/ folder and no <case>.nii.gz" in capsys.readouterr().err
