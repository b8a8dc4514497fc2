"""The boxed vertebra's interior: hand-computed distances on tiny label maps, and the arguments' errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnunet_fracture.inference.vertebra_interior import (CaseVertebrae, box_vertebra, check_shell_mm,
                                                         vertebra_interior)

L1, L2 = 20, 21


def cube(size: int = 7, lo: int = 1, hi: int = 6, label: int = L1) -> np.ndarray:
    """A ``size``^3 map, zero but for the cube [lo, hi) of ``label``."""
    vertebrae = np.zeros((size,) * 3, np.uint8)
    vertebrae[lo:hi, lo:hi, lo:hi] = label
    return vertebrae


def test_shell_zero_is_the_whole_vertebra():
    vertebrae = cube()
    vertebrae[0, 0, 0] = L2
    assert np.array_equal(vertebra_interior(vertebrae, L1, (1, 1, 1), 0), vertebrae == L1)
    assert not vertebra_interior(vertebrae, 13, (1, 1, 1), 1.0).any()  # a vertebra not in the map: nothing


@pytest.mark.parametrize("shell, core", [(0.5, (1, 6)), (1.0, (2, 5)), (1.5, (2, 5)), (2.0, (3, 4))])
def test_isotropic_cube_loses_its_outer_layers(shell, core):
    # 5^3 cube in a zero border: a face voxel lies 1 mm from the outside, the next layer 2 mm, the centre 3 mm;
    # a voxel stays if its distance is more than the shell
    lo, hi = core
    expected = np.zeros((7,) * 3, bool)
    expected[lo:hi, lo:hi, lo:hi] = True
    assert np.array_equal(vertebra_interior(cube(), L1, (1.0, 1.0, 1.0), shell), expected)


def test_anisotropic_spacing_counts_millimetres():
    # 2 mm along axis 0: the faces across axis 0 lie 2 mm from the outside, the other faces 1 mm; with a 1.5 mm
    # shell the first stay and the second go
    interior = vertebra_interior(cube(), L1, (2.0, 1.0, 1.0), 1.5)
    expected = np.zeros((7,) * 3, bool)
    expected[1:6, 2:5, 2:5] = True
    assert np.array_equal(interior, expected)


def test_another_vertebra_is_outside_and_the_image_border_is_not():
    # L1 fills i 0-3 of a 3 x 3 x 6 image touching every border, L2 fills i 4-5: only L1's voxels next to L2 are at
    # its surface
    vertebrae = np.full((3, 3, 6), L1, np.uint8)
    vertebrae[..., 4:] = L2
    for shell, kept in ((0.5, 4), (1.0, 3), (2.9, 2)):  # i = 3 is 1 mm from L2, i = 2 2 mm, i = 1 3 mm
        interior = vertebra_interior(vertebrae, L1, (1, 1, 1), shell)
        assert np.array_equal(interior, np.broadcast_to(np.arange(6) < kept, vertebrae.shape)), shell
    assert vertebra_interior(np.full((2, 2, 2), L1, np.uint8), L1, (1, 1, 1), 5.0).all()  # no outside at all


def test_case_vertebrae_by_name_or_number_computed_once():
    vertebrae = CaseVertebrae(cube(), (1.0, 1.0, 1.0), 1.0)
    first = vertebrae.interior("L1")
    assert vertebrae.interior(" l1 ") is first and vertebrae.interior(20) is first
    assert first.sum() == 27


def test_errors():
    for bad in (-0.5, float("nan"), float("inf"), True, "1.5"):
        with pytest.raises(ValueError, match="--inside-vertebra must be a shell thickness in mm"):
            check_shell_mm(bad)
    assert check_shell_mm(1) == 1.0
    with pytest.raises(ValueError, match="2 values for a 3-D"):
        vertebra_interior(cube(), L1, (1.0, 1.0), 1.0)
    assert box_vertebra("T12", Path("boxes.json"), "c1", 1) == 19 and box_vertebra("20", Path("b"), "c1", 1) == 20
    with pytest.raises(ValueError, match=r"boxes.json, case c1, box 2: label 'fracture' is not a vertebra.*Fix: name"):
        box_vertebra("fracture", Path("boxes.json"), "c1", 2)
