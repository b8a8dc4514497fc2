"""benchmarks/lattice_share.py: the share of called voxels with no called face neighbour, counted by hand."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from lattice_share import folder_share, isolated_share  # noqa: E402


def test_a_lattice_is_all_isolated_and_a_cube_not_at_all():
    lattice = np.zeros((3, 6, 6), dtype=bool)
    lattice[1, ::2, ::2] = True  # every other voxel of one slice: 9 voxels, no two share a face
    assert isolated_share(lattice) == (9, 9)
    cube = np.zeros((4, 4, 4), dtype=bool)
    cube[1:3, 1:3, 1:3] = True  # each voxel of a 2 x 2 x 2 cube has 3 face neighbours in it
    assert isolated_share(cube) == (8, 0)
    diagonal = np.zeros((3, 3, 3), dtype=bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = diagonal[0, 0, 1] = True  # (0,0,0)-(0,0,1) touch; (1,1,1) only by edges
    assert isolated_share(diagonal) == (3, 1)
    assert isolated_share(np.zeros((2, 2, 2), dtype=bool)) == (0, 0)
    with pytest.raises(ValueError, match=r"3D map, got shape \(4, 4\)"):
        isolated_share(np.zeros((4, 4), dtype=bool))


def test_a_predictions_folder_is_pooled_over_its_cases(tmp_path):
    for case, called in (("a", [(0, 0, 0), (0, 0, 2)]), ("b", [(1, 1, 1), (1, 1, 2), (3, 3, 3)])):
        probability = np.zeros((4, 4, 4), dtype=np.float32)
        for voxel in called:
            probability[voxel] = 0.9
        probability[2, 2, 2] = 0.49  # below the threshold: not called
        np.savez_compressed(tmp_path / f"{case}.npz", probabilities=np.stack([1 - probability, probability]))
        sitk.WriteImage(sitk.GetImageFromArray((probability >= 0.5).astype(np.uint8)), str(tmp_path / f"{case}.nii.gz"))
    row = folder_share(tmp_path)
    # a: both isolated (2 of 2); b: the touching pair is not, (3, 3, 3) is (1 of 3): 3 of 5 pooled
    assert row["called"] == 5 and row["isolated_share"] == pytest.approx(3 / 5)
    assert (row["case_min"], row["case_max"]) == pytest.approx((1 / 3, 1.0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no probability files \(<case>\.npz\)"):
        folder_share(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder_share(tmp_path / "not_there")
