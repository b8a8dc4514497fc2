"""nnUNetTrainerPolyDiceMCD in-process on the tiny sphere dataset, and through the stock commands (slow)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_fracture.losses import PolyDice1Loss
from nnunet_fracture.trainers import nnUNetTrainerFracture, nnUNetTrainerPolyDiceMCD
from nnunet_fracture.training.loss_wrapping import PerImageEpsilonLoss
from nnunet_fracture.training.mc_dropout import MCDropout, dropout_modules
from nnunet_fracture.training.settings import ENV_VAR
from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, quiet_env
from stock_entry import run_entry_point
from trainer_helpers import make_trainer

TRAINER = "nnUNetTrainerPolyDiceMCD"
TRAIN_CASES = ["case1", "case2", "case3", "case4"]  # nnU-Net's fold-0 split of the five cases (case0 validates)


@pytest.fixture
def dataset(mask_dataset: Path) -> Path:
    return mask_dataset


def read_difficulty(folder: Path) -> list[dict]:
    with open(folder / "difficulty.csv") as f:
        return list(csv.DictReader(f))


def test_network_has_dropout_at_the_training_rate_and_the_loss_takes_epsilon(dataset, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "dropout_p_train=0.2")
    trainer = make_trainer(nnUNetTrainerPolyDiceMCD, dataset)
    trainer.initialize()
    modules = dropout_modules(trainer.network)
    assert modules and all(isinstance(m, MCDropout) and m.p == 0.2 for m in modules)
    assert isinstance(trainer.loss, PerImageEpsilonLoss) and trainer.loss.deep_supervision is not None
    # the plans themselves keep no dropout (the live dict is copied, not edited)
    assert trainer.configuration_manager.network_arch_init_kwargs["dropout_op"] is None
    # neutral eps1 = middle of [0, 1] before any round; known cases by key, duplicates allowed
    trainer.epsilon = {"case1": 0.0, "case2": 1.0}
    assert trainer.epsilon_for(["case2", "case2", "case1", "case9"]).tolist() == [1.0, 1.0, 0.0, 0.5]


def test_epsilon_of_each_image_reaches_every_deep_supervision_scale(dataset, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = make_trainer(nnUNetTrainerPolyDiceMCD, dataset)
    trainer.initialize()
    seen = []
    original = PolyDice1Loss.forward

    def spy(self, net_output, target, epsilon=None, loss_mask=None):
        seen.append((tuple(net_output.shape[2:]), None if epsilon is None else epsilon.tolist()))
        return original(self, net_output, target, epsilon, loss_mask)

    monkeypatch.setattr(PolyDice1Loss, "forward", spy)
    trainer.epsilon = {"case1": 0.25, "case3": 0.75}
    data = torch.randn(2, 1, 16, 16, 16)
    n_scales = len(trainer._get_deep_supervision_scales())
    target = [torch.zeros(2, 1, *(16 // 2 ** i,) * 3, dtype=torch.int16) for i in range(n_scales)]
    trainer.train_step({"data": data, "target": target, "keys": ["case3", "case1"]})
    weighted = n_scales - 1  # nnU-Net gives the lowest scale weight 0, so it is not computed
    assert [eps for _, eps in seen] == [[0.75, 0.25]] * weighted
    assert [shape for shape, _ in seen] == [(16 // 2 ** i,) * 3 for i in range(weighted)]
    seen.clear()
    with torch.no_grad():
        trainer.loss(trainer.network(data), target)  # validation: no eps given -> the loss's default (neutral)
    assert all(eps is None for _, eps in seen)


def test_mc_rounds_write_difficulty_and_set_epsilon(dataset, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=2 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 mc_every=1 "
                                "mc_passes=3 mc_cases_per_round=4 mc_patches_per_case=2")
    trainer = make_trainer(nnUNetTrainerPolyDiceMCD, dataset)
    trainer.run_training()
    out = Path(trainer.output_folder)
    rows = read_difficulty(out)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert sorted(k for k in rows[0] if k != "epoch") == TRAIN_CASES
    values = [float(r[c]) for r in rows for c in TRAIN_CASES]
    assert all(v >= 0 for v in values) and any(v > 0 for v in values)
    assert (out / "difficulty.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(trainer.epsilon) == TRAIN_CASES
    assert sorted(trainer.epsilon.values()) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])  # 4 distinct ranks
    assert len(trainer.mc_round_seconds) == 2
    assert "MC-Dropout round after epoch 1: 4 case(s)" in Path(trainer.log_file).read_text(encoding="utf-8")
    # checkpointed, and restored into a fresh trainer
    state = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    saved = state["optimizer_state"]["nnunet_fracture"]
    assert sorted(saved["mc_difficulty"]["rows"]) == [0, 1] and saved["mc_epsilon"] == trainer.epsilon
    fresh = make_trainer(nnUNetTrainerPolyDiceMCD, dataset)
    fresh.load_checkpoint(str(out / "checkpoint_final.pth"))
    assert fresh.difficulty.rows == trainer.difficulty.rows and fresh.epsilon == trainer.epsilon


def test_budget_cycles_through_cases_and_foreground_only(dataset, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=2 num_iterations_per_epoch=1 num_val_iterations_per_epoch=1 mc_every=1 "
                                "mc_passes=2 mc_cases_per_round=2 mc_foreground_only=true mc_aggregate=top_percent")
    trainer = make_trainer(nnUNetTrainerPolyDiceMCD, dataset)
    trainer.run_training()
    rows = read_difficulty(Path(trainer.output_folder))
    assessed = [{c for c in TRAIN_CASES if r.get(c)} for r in rows]
    assert [len(a) for a in assessed] == [2, 2] and assessed[0] | assessed[1] == set(TRAIN_CASES)


def test_mc_every_zero_runs_no_round(dataset, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=1 num_iterations_per_epoch=1 num_val_iterations_per_epoch=1 mc_every=0")
    trainer = make_trainer(nnUNetTrainerPolyDiceMCD, dataset)
    trainer.run_training()
    assert not (Path(trainer.output_folder) / "difficulty.csv").exists() and trainer.epsilon == {}


def test_bad_settings_fail_before_training(dataset, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "mc_dropout_p=1.5")
    with pytest.raises(ValueError, match=r"mc_dropout_p must be a dropout rate in \[0, 1\), got 1.5"):
        make_trainer(nnUNetTrainerPolyDiceMCD, dataset)
    monkeypatch.setenv(ENV_VAR, "epsilon_direction=sideways")
    with pytest.raises(ValueError, match="epsilon_direction = 'sideways' is not one of 'harder_larger', "
                                         "'harder_smaller'"):
        make_trainer(nnUNetTrainerPolyDiceMCD, dataset)
    monkeypatch.setenv(ENV_VAR, "mc_passes=1")
    with pytest.raises(ValueError, match="mc_passes = 1 is out of range: it must be >= 2"):
        make_trainer(nnUNetTrainerPolyDiceMCD, dataset)


def test_composes_with_other_plugin_trainers(dataset, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)

    class nnUNetTrainerProbe(nnUNetTrainerFracture):
        settings = ("probe_width",)
        probe_width = 3

    class nnUNetTrainerPolyDiceMCDProbe(nnUNetTrainerPolyDiceMCD, nnUNetTrainerProbe):
        pass

    trainer = make_trainer(nnUNetTrainerPolyDiceMCDProbe, dataset)
    trainer.initialize()
    assert trainer.probe_width == 3 and dropout_modules(trainer.network)
    assert {"probe_width", "mc_every", "num_epochs"} <= set(trainer.settings_in_effect)


@pytest.mark.slow
def test_stock_train_resume_and_predict(dataset, nnunet_env, tmp_path):
    env = quiet_env()
    settings = ("num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 mc_every=1 mc_passes=2 mc_cases_per_round=4 "
                "final_validation=false")
    log = tmp_path / "commands.log"
    train = ["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", TRAINER, "-p", "nnUNetPlansTiny",
             "-device", "cpu"]
    run_entry_point(train, log, {**env, ENV_VAR: f"num_epochs=2 {settings}"})
    fold = nnunet_env["nnUNet_results"] / DATASET_NAME / f"{TRAINER}__nnUNetPlansTiny__3d_fullres" / "fold_0"
    assert [r["epoch"] for r in read_difficulty(fold)] == ["0", "1"]
    first = read_difficulty(fold)
    # --c continues from checkpoint_final with one more epoch: the restored table keeps rounds 0 and 1
    out = run_entry_point(train + ["--c"], log, {**env, ENV_VAR: f"num_epochs=3 {settings}"})
    assert "restored the MC-Dropout difficulty of 4 case(s) from 2 round(s)" in out
    rows = read_difficulty(fold)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and rows[:2] == first

    images = tmp_path / "images"
    images.mkdir()
    (images / "case0_0000.nii.gz").symlink_to(nnunet_env["nnUNet_raw"] / DATASET_NAME / "imagesTr" / "case0_0000.nii.gz")
    pred = tmp_path / "pred"
    run_entry_point(["nnUNetv2_predict", "-i", images, "-o", pred, "-d", str(DATASET_ID), "-c", "3d_fullres",
                     "-f", "0", "-tr", TRAINER, "-p", "nnUNetPlansTiny", "-device", "cpu", "--save_probabilities",
                     "--disable_tta"], log, env)
    probabilities = np.load(pred / "case0.npz")["probabilities"]
    assert probabilities.shape == (2, 24, 24, 24)
    # dropout is off at prediction: the same input gives the same output
    run_entry_point(["nnUNetv2_predict", "-i", images, "-o", tmp_path / "again", "-d", str(DATASET_ID),
                     "-c", "3d_fullres", "-f", "0", "-tr", TRAINER, "-p", "nnUNetPlansTiny", "-device", "cpu",
                     "--save_probabilities", "--disable_tta"], log, env)
    assert np.array_equal(probabilities, np.load(tmp_path / "again" / "case0.npz")["probabilities"])
