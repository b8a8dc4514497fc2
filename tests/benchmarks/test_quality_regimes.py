"""benchmarks/quality_regimes.py: the settings a run trains with, the schedule's and the arm's, by hand."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from quality_arms import ARMS  # noqa: E402
from quality_regimes import REGIMES  # noqa: E402


def test_an_arm_setting_replaces_the_schedules_own():
    """An arm may set a schedule key (oversample_foreground_percent) once: NNUNET_FRACTURE_SETTINGS refuses a key
    given twice. Other arms' settings strings stay as they were (a model's settings record compares them)."""
    smoke = REGIMES["smoke"]
    assert smoke.schedule() == ("num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=2 "
                                "oversample_foreground_percent=0.5 probabilistic_oversampling=true "
                                "final_validation=false")
    assert smoke.settings_with("oversample_foreground_percent=1.0 lambda_size=0.1") == (
        "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=2 probabilistic_oversampling=true "
        "final_validation=false oversample_foreground_percent=1.0 lambda_size=0.1")
    assert smoke.settings_with("") == smoke.schedule()
    for arm in ARMS.values():
        if "oversample_foreground_percent" not in arm.settings:
            assert REGIMES["cpu"].settings_with(arm.settings) == f"{REGIMES['cpu'].schedule()} {arm.settings}".strip()
