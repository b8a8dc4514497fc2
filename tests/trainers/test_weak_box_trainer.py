"""nnUNetTrainerWeakBBox / nnUNetTrainerWeakSlice in-process on tiny weak datasets, and through the stock
nnUNetv2_train / nnUNetv2_predict (two folds, ensembled)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_fracture.losses import WeakBoxLoss
from nnunet_fracture.trainers import nnUNetTrainerFracture, nnUNetTrainerWeakBBox, nnUNetTrainerWeakSlice
from nnunet_fracture.training import box_validation as box_validation_module
from nnunet_fracture.training.box_sampling import BoxAwareDataLoader
from nnunet_fracture.training.box_validation import LOG_KEYS
from nnunet_fracture.training.settings import ENV_VAR
from trainer_helpers import make_trainer, prepared_weak


def test_batches_keep_box_numbers_at_every_scale(box_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = make_trainer(nnUNetTrainerWeakBBox, box_dataset)
    trainer.initialize()
    assert isinstance(trainer.loss, WeakBoxLoss)
    assert trainer.oversample_foreground_percent == 0.5 and trainer.bag_aggregation == "mean"
    train_gen, val_gen = trainer.get_dataloaders()
    assert isinstance(train_gen.data_loader, BoxAwareDataLoader)
    seen = set()
    for _ in range(6):
        batch = next(train_gen)
        target = batch["target"]
        assert isinstance(target, list) and len(target) == len(trainer._get_deep_supervision_scales())
        for scale in target:
            assert scale.shape[1] == 1 and not scale.dtype.is_floating_point
            values = set(torch.unique(scale).tolist())
            assert values <= {0, 1, 2}  # box numbers, not a one-hot region
            seen |= values
        # the largest box number of a batch survives at full resolution
        assert set(torch.unique(target[1]).tolist()) <= set(torch.unique(target[0]).tolist()) | {0}
    assert {1} <= seen  # half of every batch is centred in a box
    output = trainer.network(batch["data"])
    loss = trainer.loss(output, batch["target"])
    assert torch.isfinite(loss) and loss.item() > 0


def test_validation_logs_box_aware_numbers(box_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=2")
    scored = []

    def recording_box_score(stats):
        scored.append(stats)
        return 0.4321

    monkeypatch.setattr(box_validation_module, "box_score", recording_box_score)
    trainer = make_trainer(nnUNetTrainerWeakBBox, box_dataset)
    trainer.run_training()
    logged = trainer.logger.local_logger.my_fantastic_logging
    for key in LOG_KEYS:
        assert len(logged[key]) == 1
    # nnU-Net's pseudo Dice is what box_score (tested by hand in tests/training/test_box_validation.py) returned
    # for the epoch's pooled numbers, which are the ones logged
    [stats] = scored
    assert logged["mean_fg_dice"][0] == 0.4321
    assert logged["box_hit_rate"][0] == pytest.approx(stats.hit_rate, nan_ok=True)
    assert logged["box_mass_inside"][0] == pytest.approx(stats.mass_inside_fraction, nan_ok=True)
    log = Path(trainer.log_file).read_text(encoding="utf-8")
    assert "box-aware validation: mass inside boxes" in log and "selects checkpoint_best" in log
    assert (Path(trainer.output_folder) / "checkpoint_final.pth").is_file()


def test_box_priors_get_millimetres_hu_and_a_growing_barrier(box_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=2 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 "
                                "lambda_outside=0 lambda_mil=0 lambda_contrast=0 lambda_tightness=1 lambda_size=1 "
                                "lambda_affinity=1 annotation_margin_mm=3 size_t0=4 size_t_growth=2 size_t_max=100 "
                                "tightness_window=2 lambda_projection=1")
    trainer = make_trainer(nnUNetTrainerWeakBBox, box_dataset)
    seen = []
    original = WeakBoxLoss.forward

    def recording_forward(self, *args, **kwargs):
        seen.append(("image_hu" in kwargs, self.size.t))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WeakBoxLoss, "forward", recording_forward)
    trainer.run_training()
    spacing = trainer.configuration_manager.spacing
    assert trainer.loss.tightness.margin == pytest.approx(tuple(3 / s for s in spacing))
    assert trainer.loss.tightness.window == 2
    # every training and validation step passed the patch in HU; the barrier was 4 in epoch 0 and 8 in epoch 1
    assert all(passed for passed, _ in seen)
    assert [t for _, t in seen] == [4.0] * 3 + [8.0] * 3
    assert trainer.loss.last_components["tightness"] > 0
    assert trainer.loss.projection.margin == trainer.loss.tightness.margin and trainer.loss.projection.window == 2
    assert trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[0] == (0.0, 0.0)  # axis-aligned boxes


def test_refuses_datasets_that_are_not_box_numbers(weak_dataset_cache, nnunet_env, tiny_dataset_cache):
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans
    from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, install

    install(tiny_dataset_cache, nnunet_env)
    write_tiny_plans(str(DATASET_ID), max_features=8, max_patch=16)
    with pytest.raises(RuntimeError, match=r"needs a weak-box dataset.*--weak box"):
        make_trainer(nnUNetTrainerWeakBBox, nnunet_env["nnUNet_preprocessed"] / DATASET_NAME)
    box = prepared_weak(weak_dataset_cache, nnunet_env, "box")
    with pytest.raises(RuntimeError, match="written with --weak box.*nnUNetTrainerWeakBBox"):
        make_trainer(nnUNetTrainerWeakSlice, box)


def test_slice_trainer_aggregates_by_max(weak_dataset_cache, nnunet_env, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=1 num_iterations_per_epoch=1 num_val_iterations_per_epoch=1")
    trainer = make_trainer(nnUNetTrainerWeakSlice, prepared_weak(weak_dataset_cache, nnunet_env, "slice"))
    assert trainer.bag_aggregation == "max"
    trainer.run_training()
    assert (Path(trainer.output_folder) / "checkpoint_final.pth").is_file()


def test_slice_planes_find_bags_in_real_slice_batches(weak_dataset_cache, nnunet_env,
                                                     monkeypatch: pytest.MonkeyPatch):
    """With ``tightness_planes=slice`` the slices of each range are bags in the batches nnU-Net's pipeline gives (with
    every axis, the patch cuts each range in-plane and no plane would be left), and the loss trains on them."""
    from nnunet_fracture.losses import find_bags
    from nnunet_fracture.losses.plane_bags import find_plane_bags

    monkeypatch.setenv(ENV_VAR, "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 "
                                "lambda_outside=0 lambda_mil=0 lambda_contrast=0 lambda_tightness=1 "
                                "tightness_planes=slice annotation_margin_mm=0")
    trainer = make_trainer(nnUNetTrainerWeakSlice, prepared_weak(weak_dataset_cache, nnunet_env, "slice"))
    trainer.initialize()
    slice_axis = list(trainer.plans_manager.transpose_forward).index(0)
    assert trainer.loss.tightness.axes == (slice_axis,)
    train_gen, _ = trainer.get_dataloaders()
    found = every_axis = 0
    for _ in range(4):
        bags = find_bags(next(train_gen)["target"][0])
        found += find_plane_bags(bags, (0, 0, 0), (slice_axis,)).count
        every_axis += find_plane_bags(bags, (0, 0, 0)).count
    assert found > 0 and every_axis == 0
    trainer.run_training()
    assert trainer.loss.last_components["tightness"] > 0


def test_composes_with_other_plugin_trainers(box_dataset: Path):
    class nnUNetTrainerNetworkProbe(nnUNetTrainerFracture):
        settings = ("probe_width",)
        probe_width = 3

    class nnUNetTrainerWeakBBoxProbe(nnUNetTrainerWeakBBox, nnUNetTrainerNetworkProbe):
        pass

    trainer = make_trainer(nnUNetTrainerWeakBBoxProbe, box_dataset)
    assert trainer.probe_width == 3 and trainer.lambda_tightness == 1.0 and trainer.lambda_mil == 0.0
    assert {"probe_width", "lambda_mil", "num_epochs"} <= set(trainer.settings_in_effect)


@pytest.mark.slow
def test_stock_train_two_folds_and_ensemble_predict(weak_box_model):
    # the session's shared model (tests/weak_box_model.py): stock nnUNetv2_train on folds 0 and 1, then stock
    # nnUNetv2_predict -f 0 1 of the five training images
    assert all("box-aware validation" in out for out in weak_box_model.train_outputs)
    assert all((weak_box_model.model / f"fold_{f}" / "checkpoint_final.pth").is_file() for f in (0, 1))
    for case in ("case0", "case4"):
        probabilities = np.load(weak_box_model.predictions / f"{case}.npz")["probabilities"]
        assert probabilities.shape == (1, 24, 24, 24)  # one sigmoid channel: the fracture region
        assert 0 <= probabilities.min() and probabilities.max() <= 1
