"""benchmarks/cleft_masks.py on a one-cleft phantom folder with hand-counted voxels."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cleft_masks  # noqa: E402


def write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 1.5))
    sitk.WriteImage(image, str(path))


def one_cleft_phantom(folder: Path) -> Path:
    """A 9^3 case: vertebra 20 fills the cube 1..7 (interior at 1.5 mm: 2..6, 125 voxels) at 300 HU, a 0 HU cleft
    plane at x = 4 (25 voxels), a 220 HU flank beside it (x = 5, y = 4: 5 voxels) and one isolated 220 HU voxel at
    x = 2; the truth is the cleft and its flank. The bone's median is 300."""
    for sub in ("images", "masks", "vertebrae"):
        (folder / sub).mkdir(parents=True)
    hu, truth, vertebrae = np.zeros((9,) * 3, np.int16), np.zeros((9,) * 3, np.uint8), np.zeros((9,) * 3, np.uint8)
    vertebrae[1:8, 1:8, 1:8], hu[1:8, 1:8, 1:8] = 20, 300
    hu[2:7, 2:7, 4], truth[2:7, 2:7, 4] = 0, 1  # numpy [z, y, x]
    hu[2:7, 4, 5], truth[2:7, 4, 5] = 220, 1
    hu[4, 4, 2] = 220
    write(hu, folder / "images" / "c.nii.gz")
    write(truth, folder / "masks" / "c.nii.gz")
    write(vertebrae, folder / "vertebrae" / "c.nii.gz")
    cleft = {"type": "cleft", "label": 20, "box": {"lo": [1, 1, 1], "hi": [7, 7, 7], "space": "voxel"}}
    meta = {"cases": [{"case_id": "c", "spacing": [1.5, 1.5, 1.5], "fractures": [cleft, {**cleft, "type": "wedge"}]}]}
    (folder / "phantom.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def test_counts_by_hand(tmp_path):
    counts = cleft_masks.cleft_counts(one_cleft_phantom(tmp_path / "p"),
                                      settings=((100.0, 0.0), (100.0, 75.0), (75.0, 0.0), (150.0, 0.0)))
    assert counts[(100.0, 0.0)].tolist() == [25, 0, 5]  # the core (< 200 HU): the cleft, not its flank
    assert counts[(100.0, 75.0)].tolist() == [30, 0, 0]  # grown into the flank (< 225 HU), not the isolated voxel
    assert counts[(75.0, 0.0)].tolist() == [30, 1, 0]  # a shallower core takes the isolated voxel too
    assert counts[(150.0, 0.0)].tolist() == [25, 0, 5]
    assert cleft_masks.scores(25, 0, 5) == {"dice": 50 / 55, "precision": 1.0, "recall": 25 / 30}


def test_main_writes_the_table_json(tmp_path, capsys):
    phantom = one_cleft_phantom(tmp_path / "p")
    assert cleft_masks.main(["--phantoms", str(phantom), "--out", str(tmp_path / "cleft.json")]) == 0
    result = json.loads((tmp_path / "cleft.json").read_text())["phantoms"]["p"]
    assert result["100/75"] == {"dice": 1.0, "precision": 1.0, "recall": 1.0}
    assert "| 100/75 | 1.000 (P 1.00, R 1.00) |" in capsys.readouterr().out
