"""The fixed, otsu and fraction box rules on tiny hand-computed arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnunet_fracture.inference.selection_rules import Rule, select_in_box


def test_fixed_rule():
    sel = select_in_box(np.array([0.49, 0.5, 0.9]), Rule("fixed", threshold=0.5))
    assert sel.keep.tolist() == [False, True, True] and sel.threshold == 0.5 and sel.comparison == ">="


def test_otsu_rule_bimodal_constant_and_floor():
    p = np.array([[0.1, 0.12, 0.11], [0.7, 0.8, 0.75]])
    sel = select_in_box(p, Rule("otsu"))
    assert sel.keep.tolist() == [[False] * 3, [True] * 3] and 0.12 <= sel.threshold < 0.7 and sel.comparison == ">"
    # constant box: no Otsu threshold; kept whole only at P >= 0.5
    assert select_in_box(np.full(4, 0.6), Rule("otsu")).keep.all()
    constant = select_in_box(np.full(4, 0.3), Rule("otsu"))
    assert not constant.keep.any() and constant.threshold == 0.5
    # bimodal but all low: Otsu lands between 0.01 and 0.03, the floor 0.05 empties the box
    low = select_in_box(np.array([0.01, 0.01, 0.03, 0.03]), Rule("otsu", min_threshold=0.05))
    assert not low.keep.any() and low.threshold == 0.05


def test_fraction_rule_count_ties_and_floor():
    p = np.array([0.2, 0.9, 0.2, 0.2, 0.5, 0.2, 0.01, 0.2, 0.2, 0.2])
    sel = select_in_box(p, Rule("fraction", fraction=0.3))  # ceil(0.3 * 10) = 3: 0.9, 0.5, the first 0.2
    assert np.flatnonzero(sel.keep).tolist() == [0, 1, 4] and sel.threshold == pytest.approx(0.2)
    assert sel.comparison == "rank"
    half = select_in_box(np.array([0.5, 0.04, 0.03, 0.02]), Rule("fraction", fraction=0.5, min_threshold=0.05))
    assert np.flatnonzero(half.keep).tolist() == [0]  # only one voxel reaches the floor
    none = select_in_box(np.full(3, 0.01), Rule("fraction"))
    assert not none.keep.any() and math.isnan(none.threshold)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "mean"}, "unknown rule"), ({"threshold": 0.0}, "--threshold"), ({"threshold": 1.5}, "--threshold"),
    ({"fraction": 0.0}, "--fraction"), ({"fraction": math.nan}, "--fraction"),
    ({"min_threshold": 1.0}, "--min-threshold"), ({"min_threshold": -0.1}, "--min-threshold"),
])
def test_rule_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Rule(**kwargs)
