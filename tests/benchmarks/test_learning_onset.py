"""benchmarks/learning_onset.py: one row per nnU-Net training log of a model folder, read by hand."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from learning_onset import main  # noqa: E402

SETTINGS = ("2026-12-07 12:33:23.1: nnunet_fracture 0.1.0 nnUNetTrainerFracture settings: num_epochs=4 (env), "
            "oversample_foreground_percent=1.0 (env), probabilistic_oversampling=True (env)\n")


def _log(folder: Path, stamp: str, dice: list[str], settings: str = SETTINGS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"2026-12-07 12:4{i}:00.0: Pseudo dice [{d}] \n" for i, d in enumerate(dice)]
    (folder / f"training_log_{stamp}.txt").write_text(settings + "".join(lines), encoding="utf-8")


def test_each_launch_of_a_folder_is_a_row(tmp_path, capsys):
    fold = tmp_path / "Dataset700_X" / "nnUNetTrainerFracture__nnUNetPlansBench__3d_fullres" / "fold_all"
    _log(fold, "2026_12_7_12_33_23", ["np.float32(0.001)", "np.float32(0.0)", "np.float32(0.4)", "np.float32(0.6)"])
    _log(fold, "2026_12_7_20_47_17", ["0.0", "0.0", "0.0"], settings="")  # an older nnU-Net log, no settings line
    _log(fold, "2026_12_7_21_00_00", ["0.0"])  # stopped after one epoch: left out
    out = tmp_path / "onset.json"
    assert main([str(fold.parent), "--json", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [(r["epochs"], r["onset_epoch"], r["oversample_foreground_percent"]) for r in rows] == \
        [(4, 2, 1.0), (3, None, None)]
    assert rows[0]["pseudo_dice_last_epochs"] == pytest.approx(0.25025)  # (0.001 + 0 + 0.4 + 0.6) / 4
    assert rows[1]["collapsed"] is True
    printed = capsys.readouterr().out
    assert "| 4 | 2 | 1.0 | 0.250 |" in printed and "| 3 | never | None | 0.000 |" in printed


def test_a_folder_without_logs_says_what_to_pass(tmp_path):
    with pytest.raises(SystemExit, match=r"no fold_\*/training_log_\*.txt under .*Fix: pass the model folders"):
        main([str(tmp_path)])
