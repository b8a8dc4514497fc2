"""``LabelOptions``: the pseudo-mask options checked once, what needs what, and what a self-training record keeps."""
from __future__ import annotations

import math

import pytest

from nnunet_fracture.inference.label_options import LabelOptions


def test_defaults_ignore_nothing_and_need_no_export():
    options = LabelOptions()
    assert not options.ignores and options.inside_vertebra is None and options.dark_lesions == 0.0
    options.check_export(exporting=False)
    assert options.recorded() == {"ignore_band": None}


def test_values_are_normalised_and_each_ignore_option_counts():
    options = LabelOptions(ignore_band=[0.2, 0.5], ignore_faint=100, inside_vertebra=1, dark_lesions=100)
    assert options.ignore_band == (0.2, 0.5) and isinstance(options.ignore_faint, float)
    assert options.inside_vertebra == 1.0 and options.ignores
    for option, value in (("ignore_ring", 1), ("ignore_unsure", 0.4), ("ignore_faint", 100.0)):
        assert LabelOptions(**{option: value}).ignores, option
    assert LabelOptions(inside_vertebra=0.0, dark_lesions=100.0, ignore_dark_margin=2).ignores
    assert not LabelOptions(inside_vertebra=0.0, dark_lesions=100.0).ignores  # shapes masks, not ignore labels


def test_the_record_keeps_the_band_and_only_the_options_set():
    assert LabelOptions(ignore_band=(0.2, 0.5), inside_vertebra=0.0).recorded() == {
        "ignore_band": [0.2, 0.5], "inside_vertebra": 0.0}  # 0 mm clips to the vertebra: set, so recorded
    assert LabelOptions(ignore_ring=2, ignore_unsure=0.4, inside_vertebra=1.5, ignore_faint=100.0, dark_lesions=100.0,
                        ignore_dark_margin=1, dark_grow=75).recorded() == {
        "ignore_band": None, "ignore_ring": 2, "ignore_unsure": 0.4, "inside_vertebra": 1.5, "ignore_faint": 100.0,
        "dark_lesions": 100.0, "ignore_dark_margin": 1, "dark_grow": 75.0}


@pytest.mark.parametrize("option", ["ignore_band", "ignore_ring", "ignore_unsure", "ignore_faint"])
def test_the_ignore_options_need_an_export(option):
    value = {"ignore_band": (0.2, 0.5), "ignore_ring": 1, "ignore_unsure": 0.4, "ignore_faint": 100.0}[option]
    options = LabelOptions(**{option: value})
    options.check_export(exporting=True)
    with pytest.raises(ValueError, match="only shapes the exported labels. Fix: add --export-dataset"):
        options.check_export(exporting=False)


def test_the_dark_margin_needs_an_export_too():
    options = LabelOptions(inside_vertebra=0.0, dark_lesions=100.0, ignore_dark_margin=2)
    options.check_export(exporting=True)
    with pytest.raises(ValueError, match="--ignore-dark-margin only shapes the exported labels"):
        options.check_export(exporting=False)


@pytest.mark.parametrize("options, message", [
    ({"ignore_band": (0.5, 0.2)}, "--ignore-band must be two probabilities LOW < HIGH"),
    ({"ignore_band": (0.2, 1.5)}, "--ignore-band must be two probabilities LOW < HIGH"),
    ({"ignore_ring": -1}, "--ignore-ring must be a whole number"),
    ({"ignore_ring": 1.5}, "--ignore-ring must be a whole number"),
    ({"ignore_unsure": 1.0}, "--ignore-unsure-boxes must be a share of the boxes in \\[0, 1\\)"),
    ({"ignore_faint": math.nan}, "--ignore-faint-boxes must be a HU difference >= 0"),
    ({"inside_vertebra": -1.0}, "--inside-vertebra must be a shell thickness in mm >= 0"),
    ({"inside_vertebra": 0.0, "dark_lesions": -5}, "--dark-lesions must be a HU difference >= 0"),
    ({"dark_lesions": 100.0}, "--dark-lesions compares each box's bone only.*Fix: add --inside-vertebra"),
    ({"inside_vertebra": 0.0, "ignore_dark_margin": 1}, "--ignore-dark-margin widens.*Fix: add --dark-lesions"),
    ({"inside_vertebra": 0.0, "dark_lesions": 100.0, "ignore_dark_margin": -1}, "--ignore-dark-margin"),
    ({"inside_vertebra": 0.0, "dark_grow": 75.0}, "--dark-grow grows the dark lesions.*Fix: add --dark-lesions"),
    ({"inside_vertebra": 0.0, "dark_lesions": 100.0, "dark_grow": 120.0}, "--dark-grow 120 must be less than"),
])
def test_bad_options_are_refused_with_the_fix(options, message):
    with pytest.raises(ValueError, match=message):
        LabelOptions(**options)
