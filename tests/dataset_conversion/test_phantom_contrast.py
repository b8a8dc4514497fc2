"""Fracture visibility of the phantom: contrast-to-noise ratios by hand, and what the contrast presets change."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.phantom import generate_case
from nnunet_fracture.dataset_conversion.phantom_contrast import contrast_by_kind, format_contrast, fracture_contrast
from nnunet_fracture.dataset_conversion.phantom_render import TISSUE


def test_cnr_by_hand():
    # a 3 x 5 x 5 block of vertebra 20, all cancellous: the one-voxel erosion keeps the centre slice's inner 3 x 3
    shape = (3, 5, 5)
    tissue = np.full(shape, TISSUE["cancellous"], dtype=np.uint8)
    vertebrae = np.full(shape, 20, dtype=np.uint8)
    instances = np.zeros(shape, dtype=np.uint8)
    instances[0, 0, 0] = instances[0, 0, 1] = 1  # fracture voxels: 500 and 700 HU
    ct = np.zeros(shape, dtype=np.int16)
    ct[0, 0, 0], ct[0, 0, 1] = 500, 700
    inner = np.array([[100, 100, 100], [100, 140, 100], [100, 100, 100]], dtype=np.int16)
    ct[1, 1:4, 1:4] = inner
    [result] = fracture_contrast(ct, instances, vertebrae, tissue, [20])
    # healthy: eight 100s and one 140 -> mean 940 / 9 = 104.44, variance (8 * 4.444^2 + 35.556^2) / 9 = 158.0,
    # std 12.571; fracture mean 600 -> contrast 495.6 HU, CNR 495.556 / 12.571 = 39.42
    assert result == {"contrast_hu": 495.6, "cnr": 39.42}


def test_cnr_none_without_reference_bone_and_shape_errors():
    shape = (2, 2, 2)
    one = np.ones(shape, dtype=np.uint8)
    assert fracture_contrast(np.zeros(shape), one, one * 20, one * TISSUE["cancellous"], [20]) == \
        [{"contrast_hu": None, "cnr": None}]
    with pytest.raises(ValueError, match=r"ct \(2, 2, 2\), instances \(2, 2\)"):
        fracture_contrast(np.zeros(shape), np.zeros((2, 2)), one, one, [20])


def test_summary_by_kind_and_line():
    fractures = [{"type": "wedge", "cnr": 8.0, "contrast_hu": 300.0}, {"type": "wedge", "cnr": 10.0, "contrast_hu": 340.0},
                 {"type": "cleft", "cnr": -3.0, "contrast_hu": -150.0}]
    summary = contrast_by_kind(fractures)
    assert summary["wedge"] == {"fractures": 2, "cnr_mean": 9.0, "cnr_min": 8.0, "cnr_max": 10.0,
                                "contrast_hu_mean": 320.0}
    assert summary["cleft"]["cnr_mean"] == -3.0
    assert format_contrast(summary) == ("cleft: 1 fracture(s), CNR -3.0 (-3.0 to -3.0), -150 HU; "
                                        "wedge: 2 fracture(s), CNR 9.0 (8.0 to 10.0), +320 HU")


def test_standard_masks_mark_the_visible_band_only_subtle_reach_into_the_endplate():
    standard, subtle = generate_case(0, seed=0), generate_case(0, seed=0, contrast="subtle")
    band = [k for k, f in enumerate(standard.fractures, start=1) if f["type"] in ("wedge", "compression")]
    assert band
    for k in band:
        own = standard.instances == k
        # the standard ground truth is the condensation band as painted: no cortex, nothing of the healthy bone
        assert set(np.unique(standard.tissue[own]).tolist()) <= {TISSUE["sclerotic_band"]}
        assert (subtle.instances == k).sum() > own.sum()
        assert TISSUE["cortical"] in np.unique(subtle.tissue[subtle.instances == k])
        # clearly denser than the bone around it (at least 5 noise standard deviations)
        assert standard.fractures[k - 1]["cnr"] > 5
        assert standard.fractures[k - 1]["contrast_hu"] > subtle.fractures[k - 1]["contrast_hu"]


def test_phantom_json_and_cli_report_the_contrast(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["phantom", str(out), "--cases", "2", "--seed", "0", "--spacing", "2", "2", "2"]) == 0
    printed = capsys.readouterr().out
    assert "fracture contrast (standard; CNR against the healthy cancellous bone" in printed
    meta = json.loads((out / "phantom.json").read_text(encoding="utf-8"))
    assert meta["settings"]["contrast"] == "standard" and meta["version"] == "2"
    kinds = {f["type"] for case in meta["cases"] for f in case["fractures"]}
    assert set(meta["fracture_contrast"]) == kinds and all(
        isinstance(f["cnr"], float) for case in meta["cases"] for f in case["fractures"])
    assert main(["phantom", str(tmp_path / "q"), "--cases", "1", "--contrast", "subtle", "--spacing", "2", "2", "2"]) == 0
    assert json.loads((tmp_path / "q" / "phantom.json").read_text(encoding="utf-8"))["settings"]["contrast"] == "subtle"
    with pytest.raises(SystemExit):
        main(["phantom", str(tmp_path / "r"), "--contrast", "faint"])
