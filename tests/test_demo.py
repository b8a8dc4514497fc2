"""The README's demo (``bash scripts/demo.sh``), end to end on a minute's schedule: phantom -> convert -> stock
plan / train / predict -> pseudo-masks inside the vertebrae -> one self-training round -> the three reports.
Its numbers mean nothing at this length; the test checks that every step runs and reports."""
import json

import pytest

from nnunet_fracture.demo import main

pytestmark = pytest.mark.slow


def test_the_demo_runs_every_step_and_writes_its_summary(nnunet_env, tmp_path):
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--train-cases", "2", "--test-cases", "1", "--epochs", "1", "--iterations", "2",
                 "--rounds", "1", "--strong-epochs", "1"]) == 0
    summary = json.loads((out / "demo_summary.json").read_text())
    assert set(summary["reports"]) == {"weak_model", "pseudo_masks", "strong_model", "strong_model_cleaned",
                                       "strong_pseudo_masks"}
    assert summary["settings"]["inside_vertebra"] == 1.5 and summary["settings"]["rounds"] == 1
    [round_1] = summary["self_training"]["rounds"]
    assert round_1["round"] == 1 and summary["self_training"]["settings"]["inside_vertebra"] == 1.5
    assert summary["self_training"]["settings"]["ignore_band"] == [0.2, 0.5]
    assert (summary["settings"]["dark_lesions"], summary["settings"]["dark_grow"]) == (100.0, 75.0)
    assert summary["self_training"]["settings"]["dark_lesions"] == 100.0
    assert summary["self_training"]["settings"]["dark_grow"] == 75.0
    record = json.loads((out / "predictions_strong_cleaned" / "postprocessing.json").read_text())
    assert record["fraction"] == 0.1 and record["dataset"].endswith("Dataset992_DemoFlywheelR1")
    for report in ("weak_model", "pseudo_masks", "strong_model", "strong_model_cleaned", "strong_pseudo_masks"):
        assert (out / "report" / report / "summary.json").is_file(), report
    assert len(list((out / "pseudo_masks" / "masks").glob("*.nii.gz"))) == 1
    provenance = json.loads((out / "pseudo_masks_strong" / "pseudo_masks.json").read_text())
    assert provenance["prediction_folders"] == [str(out / "predictions_strong")]  # the strong model's P
