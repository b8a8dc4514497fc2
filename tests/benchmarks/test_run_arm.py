"""benchmarks/quality.py's run_arm: which predictions each arm scores, with the training and the scoring
replaced by recorders (the real ones run in the bench)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import quality  # noqa: E402
import quality_scoring  # noqa: E402
from quality_regimes import REGIMES  # noqa: E402


class RecordingWorkspace:
    """The parts of quality.Workspace that run_arm uses; "training" makes an empty predictions folder."""

    def __init__(self, root: Path) -> None:
        self.root, self.regime, self.trained = root, REGIMES["cpu"], []

    def test_dataset(self) -> Path:
        return self.root / "test"

    def phantom(self, seed: int, cases: int) -> Path:
        return self.root / f"phantom_{seed}_{cases}"

    def predictions(self, arm_name: str, seed: int, suffix: str = "") -> Path:
        return self.root / "predictions" / f"{arm_name}_seed{seed}{suffix}"

    def train_and_predict(self, arm_name: str, arm, seed: int) -> Path:
        self.trained.append(arm_name)
        folder = self.predictions(arm_name, seed)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


@pytest.fixture
def scored(monkeypatch):
    """The (predictions folder name, rule) of every score_predictions call; each scores in_box_dice 0.5."""
    calls = []

    def score_predictions(predictions, test, phantom, rule, out, refine=None, options=None, masks=None):
        calls.append((predictions.name, rule) if masks is None else (predictions.name, rule, masks.name))
        return {"in_box_dice": 0.5, "in_box_precision": 0.5, "in_box_recall": 0.5, "whole_volume_dice": 0.25}

    monkeypatch.setattr(quality_scoring, "score_predictions", score_predictions)
    return calls


@pytest.mark.parametrize("arm_name", ["full_mask", "adversarial"])
def test_a_plain_arm_scores_its_own_model_once_even_beside_a_previous_round_folder(tmp_path, scored, arm_name):
    ws = RecordingWorkspace(tmp_path)
    ws.predictions(arm_name, 0, quality.PREVIOUS_ROUND).mkdir(parents=True)  # left by nothing this arm does
    result = quality.run_arm(ws, arm_name, 0)  # crashed here when self_training_rounds was None
    assert ws.trained == [arm_name] and scored == [(f"{arm_name}_seed0", None)]
    assert "previous_round" not in result and result["whole_volume_dice"] == 0.25


def test_a_two_round_arm_also_scores_the_round_before_its_last(tmp_path, scored):
    ws = RecordingWorkspace(tmp_path)
    quality.run_arm(ws, "flywheel_dark_present", 1)
    assert "previous_round" not in quality.run_arm(ws, "flywheel_dark_present", 1)  # no previous folder yet
    ws.predictions("flywheel_dark_present", 1, quality.PREVIOUS_ROUND).mkdir(parents=True)
    scored.clear()
    result = quality.run_arm(ws, "flywheel_dark_present", 1)
    # a self-trained model is scored on its own masks (rule None), the previous round likewise
    assert scored == [("flywheel_dark_present_seed1", None), ("flywheel_dark_present_seed1_previous_round", None)]
    assert result["previous_round"]["in_box_dice"] == 0.5
    assert set(result["previous_round"]) == set(quality.PREVIOUS_ROUND_KEYS)


def test_a_refined_weak_arm_is_also_scored_before_refinement(tmp_path, scored):
    ws = RecordingWorkspace(tmp_path)
    result = quality.run_arm(ws, "solid_bags_refined", 2)
    rule = quality.ARMS["solid_bags_refined"].pseudo_masks
    assert scored == [("weak_bbox_seed2", rule), ("weak_bbox_seed2", rule)]  # predictions_of: weak_bbox's model
    assert ws.trained == ["weak_bbox"] and result["before_refinement"]["in_box_dice"] == 0.5


def test_a_speck_removing_arm_scores_its_sources_probabilities_with_the_cleaned_masks(tmp_path, scored, monkeypatch):
    ws = RecordingWorkspace(tmp_path)
    ws.training_labels = lambda arm, seed: tmp_path / f"labels_of_{arm.predictions_of}_{seed}"
    cleaned = []

    def clean_masks(predictions, out, dataset, fraction):
        cleaned.append((predictions.name, out.name, dataset.name, fraction))
        return {"postprocessing": {"components_removed": 3}}

    monkeypatch.setattr(quality_scoring, "clean_masks", clean_masks)
    result = quality.run_arm(ws, "full_mask_cleaned", 1)
    assert ws.trained == ["full_mask"]  # the source's model, trained since this workspace lacks it
    assert cleaned == [("full_mask_seed1", "full_mask_cleaned_seed1", "labels_of_full_mask_1", 0.1)]
    assert scored == [("full_mask_seed1", None, "full_mask_cleaned_seed1")]
    assert result["postprocessing"] == {"components_removed": 3}


def test_a_rounds_pseudo_mask_arm_scores_the_rounds_model_by_the_rule(tmp_path, scored):
    ws = RecordingWorkspace(tmp_path)
    result = quality.run_arm(ws, "flywheel_masks", 0)
    arm = quality.ARMS["flywheel_masks"]
    # the round's model (flywheel's), its P by the rule; then the same masks before the random walker
    assert ws.trained == ["flywheel"] and arm.refine == "random_walker"
    assert scored == [("flywheel_seed0", arm.pseudo_masks), ("flywheel_seed0", arm.pseudo_masks)]
    assert result["before_refinement"]["in_box_dice"] == 0.5
    scored.clear()
    quality.run_arm(ws, "flywheel", 0)  # the round's own segmentation, as before
    assert scored == [("flywheel_seed0", None)]
