"""The quality bench's results: the per-run cache ``quality_runs/<regime>/<arm>/seed<s>_<key>.json`` and the
``quality.json`` rebuilt from it (see ``benchmarks/quality.py``)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from quality_arms import ARMS, run_key
from quality_regimes import Regime

TEST_ID = 799  # the held-out test dataset's ID in every workspace


def phantom_version() -> str:
    from nnunet_fracture.dataset_conversion.phantom import PHANTOM_VERSION

    return PHANTOM_VERSION


def cached_runs(results: Path, regime_name: str, regime: Regime) -> dict:
    """``{arm: {"config": ..., "seeds": {seed: entry}}}`` of the cached results that match today's recipes."""
    version, arms = phantom_version(), {}
    for arm_name, arm in ARMS.items():
        for path in sorted((results / "quality_runs" / regime_name / arm_name).glob("seed*_*.json")):
            seed = int(path.stem.split("_")[0][len("seed"):])
            if path.stem.split("_", 1)[1] != run_key(arm, regime, seed, version):
                continue  # a result of an older recipe, regime or phantom
            entry = arms.setdefault(arm_name, {"config": {**asdict(arm), "key_of_seed": {}}, "seeds": {}})
            entry["seeds"][str(seed)] = json.loads(path.read_text(encoding="utf-8"))
            entry["config"]["key_of_seed"][str(seed)] = path.stem.split("_", 1)[1]
    return arms


def test_set_facts(work: Path, regime_name: str, regime: Regime) -> dict | None:
    """Cases, fracture-free cases and the mean ground-truth volume of a fractured test case (voxels), read from
    the workspace's test dataset (None before it exists): the scale of ``fp_voxels_per_normal_case``."""
    from quality_scoring import cases

    ws_root = work / regime_name
    raw = sorted((ws_root / "nnUNet_raw").glob(f"Dataset{TEST_ID}_*"))
    phantom = ws_root / f"phantom_seed{regime.test_seed}_{regime.test_cases}"
    if not raw or not (phantom / "phantom.json").is_file():
        return None
    volumes = [int(gt.sum()) for _, gt, _ in cases(raw[0], phantom)]
    fractured = [v for v in volumes if v > 0]
    return {"cases": len(volumes), "fracture_free_cases": len(volumes) - len(fractured),
            "mean_fracture_voxels_per_fractured_case": float(np.mean(fractured)) if fractured else None}


def write_quality_json(results: Path, regime_name: str, regime: Regime, work: Path) -> Path:
    out = results / ("quality.json" if regime_name == "cpu" else f"quality_{regime_name}.json")
    data = {"regime": {"name": regime_name, **asdict(regime)}, "phantom_version": phantom_version(),
            "test_set": test_set_facts(work, regime_name, regime),
            "arms": cached_runs(results, regime_name, regime)}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)
    return out
