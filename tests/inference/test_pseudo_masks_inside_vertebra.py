"""``pseudo-masks --inside-vertebra``: each box's mask clipped to the interior of the vertebra it names, end to end
on a tiny dataset with hand-computed masks, and its input errors (nothing written)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
from nnunet_fracture.inference.label_options import LabelOptions
from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks

from pseudo_mask_cases import SHAPE, fold0, image, on_grid, prediction_folder, read, rows

# numpy [k, j, i] of shape (4, 5, 6), spacing 0.8 mm along i: L1 (20) fills i 0-3, L2 (21) i 4-5; the box "L1" is
# the whole image, the box "L2" i 3-5. P = 0.9 everywhere, so the fixed rule keeps each whole box.
BOX_L1, BOX_L2 = VoxelBox((0, 0, 0), (5, 4, 3), "L1"), VoxelBox((3, 0, 0), (5, 4, 3), "L2")


@pytest.fixture
def spine(nnunet_env):
    vertebrae = np.full(SHAPE, 20, np.uint8)
    vertebrae[..., 4:] = 21
    case = CaseRecord("spine", image(), [BOX_L1, BOX_L2], None, on_grid(vertebrae), "spine.nii.gz")
    return write_raw_dataset([case], 503, "Spine", raw_root=nnunet_env["nnUNet_raw"])


def along_i(*kept: int) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[..., list(kept)] = 1
    return mask


@pytest.mark.parametrize("shell, kept, removed", [
    # 0: each box keeps its own vertebra (L1's box i 0-3 of its 120 voxels, L2's box i 4-5 of its 60)
    (0.0, (0, 1, 2, 3, 4, 5), (40, 20)),
    # 0.8 mm: L1's i = 3 and L2's i = 4 lie 0.8 mm from the other vertebra and go; the image border is no surface,
    # so L2 keeps i = 5
    (0.8, (0, 1, 2, 5), (60, 40)),
])
def test_masks_keep_the_boxed_vertebras_interior(spine, tmp_path, shell, kept, removed):
    pred = prediction_folder(tmp_path / "pred", {"spine": np.full(SHAPE, 0.9, np.float32)})
    prov = write_pseudo_masks([pred], spine, tmp_path / "out", options=LabelOptions(inside_vertebra=shell))
    assert np.array_equal(read(tmp_path / "out" / "masks" / "spine.nii.gz"), along_i(*kept))
    table = rows(tmp_path / "out")
    assert [int(table[("spine", b)]["outside_vertebra"]) for b in (1, 2)] == list(removed)
    assert [int(table[("spine", b)]["voxels_kept"]) for b in (1, 2)] == [120 - removed[0], 60 - removed[1]]
    assert prov["inside_vertebra"] == {"shell_mm": shell, "voxels_removed": sum(removed)}


def test_off_by_default(spine, tmp_path):
    pred = prediction_folder(tmp_path / "pred", {"spine": np.full(SHAPE, 0.9, np.float32)})
    prov = write_pseudo_masks([pred], spine, tmp_path / "out")
    assert read(tmp_path / "out" / "masks" / "spine.nii.gz").all() and prov["inside_vertebra"] is None
    assert {r["outside_vertebra"] for r in rows(tmp_path / "out").values()} == {"0"}


def test_cli(spine, tmp_path, capsys):
    pred = prediction_folder(tmp_path / "pred", {"spine": np.full(SHAPE, 0.9, np.float32)})
    main(["pseudo-masks", str(pred), "--dataset", "503", "--out", str(tmp_path / "out"), "--refine", "none",
          "--inside-vertebra", "0.8"])
    assert np.array_equal(read(tmp_path / "out" / "masks" / "spine.nii.gz"), along_i(0, 1, 2, 5))
    assert json.loads((tmp_path / "out" / "pseudo_masks.json").read_text())["inside_vertebra"]["shell_mm"] == 0.8


def test_input_errors_leave_nothing(src, tmp_path):
    # 'two' was converted without a vertebra map; 'frac' has one, but its third box names no vertebra
    two = prediction_folder(tmp_path / "two", {"two": fold0()["two"]})
    frac = prediction_folder(tmp_path / "frac", {"frac": fold0()["frac"]})
    for pred, error, match in (
            (two, FileNotFoundError, r"case two: no vertebra map .*vertebraeTr/two\.nii\.gz.*Fix: convert"),
            (frac, ValueError, r"boxes\.json, case frac, box 3: label '' is not a vertebra.*Fix"),
    ):
        with pytest.raises(error, match=match):
            write_pseudo_masks([pred], src, tmp_path / "out", options=LabelOptions(inside_vertebra=1.0))
        assert not [p for p in tmp_path.iterdir() if p.name == "out" or p.name.startswith(".")]
    with pytest.raises(ValueError, match="--inside-vertebra must be a shell thickness"):
        write_pseudo_masks([frac], src, tmp_path / "out", options=LabelOptions(inside_vertebra=-1.0))
