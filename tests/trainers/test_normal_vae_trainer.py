"""nnUNetTrainerNormalVAE in-process on the tiny weak-box dataset (network, normal batches, final validation,
resuming), and the weak-box trainer's L4 reading E from a two-channel dataset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nnunet_fracture.losses import WeakBoxLoss
from nnunet_fracture.networks.vae import ConvVAE
from nnunet_fracture.trainers import nnUNetTrainerNormalVAE, nnUNetTrainerWeakBBox, nnUNetTrainerWeakBBoxClsHead
from nnunet_fracture.training.settings import ENV_VAR
from vae_tiny_dataset import DATASET_ID, E_INSIDE, E_OUTSIDE, install_two_channel, preprocessed_two_channel_dataset
from trainer_helpers import make_trainer, with_tiny_plans

SHORT = "num_epochs={} num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 vae_box_margin=1"


@pytest.fixture(scope="module")
def two_channel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return preprocessed_two_channel_dataset(tmp_path_factory.mktemp("vae_two_channel"))


def test_network_loss_and_normal_batches(box_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, SHORT.format(1))
    trainer = make_trainer(nnUNetTrainerNormalVAE, box_dataset)
    trainer.initialize()
    assert isinstance(trainer.network, ConvVAE) and trainer.network.latent_dim == trainer.vae_latent_dim
    assert tuple(trainer.network.patch_size) == tuple(trainer.configuration_manager.patch_size)
    assert trainer.loss.beta == pytest.approx(1.0 / 10)  # warm-up: epoch 0 of 10
    trainer.network.eval()
    patch = tuple(trainer.configuration_manager.patch_size)
    assert trainer.network(torch.zeros(1, 1, *patch)).shape == (1, trainer.label_manager.num_segmentation_heads,
                                                                *patch)
    train_gen, _ = trainer.get_dataloaders()
    for _ in range(3):
        batch = next(train_gen)
        assert not bool((batch["target"] > 0).any())
        assert tuple(batch["data"].shape[2:]) == patch  # no enlarged rotation patch
    bad = {"data": batch["data"], "target": torch.ones_like(batch["target"]), "keys": batch["keys"]}
    with pytest.raises(RuntimeError, match="holds box/fracture voxels"):
        trainer.train_step(bad)


def test_trains_validates_and_resumes(box_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, SHORT.format(2))
    first = make_trainer(nnUNetTrainerNormalVAE, box_dataset)
    first.run_training()
    first.perform_actual_validation()
    out = Path(first.output_folder)
    summary = json.loads((out / "validation" / "vae_summary.json").read_text(encoding="utf-8"))
    assert set(summary["pooled"]) == {"mean_inside", "mean_outside", "ratio_inside_outside"}
    assert summary["pooled"]["mean_outside"] > 0
    assert "VAE final validation" in Path(first.log_file).read_text(encoding="utf-8")
    weights = {k: v.clone() for k, v in first.network.state_dict().items()}

    # what nnUNetv2_train --c does: a new trainer, load_checkpoint, run_training
    monkeypatch.setenv(ENV_VAR, SHORT.format(3))
    second = make_trainer(nnUNetTrainerNormalVAE, box_dataset)
    second.load_checkpoint(str(out / "checkpoint_final.pth"))
    assert second.current_epoch == 2
    for key, value in second.network.state_dict().items():
        torch.testing.assert_close(value, weights[key])
    assert len(second.run_history) == 1 and second.run_history[0]["settings"]["num_epochs"] == 2
    second.run_training()
    logged = second.logger.local_logger.my_fantastic_logging
    assert len(logged["train_losses"]) == 3  # epochs 0-1 restored, epoch 2 trained
    assert second.loss.beta == pytest.approx(3 / 10)  # the warm-up continues from the restored epoch
    assert "settings changed since: num_epochs: 2 -> 3" in Path(second.log_file).read_text(encoding="utf-8")


def test_refuses_a_dataset_with_an_error_channel(two_channel_cache, nnunet_env):
    dataset = with_tiny_plans(DATASET_ID, install_two_channel(two_channel_cache, nnunet_env))
    with pytest.raises(RuntimeError, match="already holds a VAE error channel"):
        make_trainer(nnUNetTrainerNormalVAE, dataset)


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerWeakBBox, nnUNetTrainerWeakBBoxClsHead])
def test_weak_box_l4_reads_e_from_the_batch(trainer_class, two_channel_cache, nnunet_env,
                                            monkeypatch: pytest.MonkeyPatch):
    # the classification head wraps the weak-box loss; E must still reach it
    dataset = with_tiny_plans(DATASET_ID, install_two_channel(two_channel_cache, nnunet_env))
    monkeypatch.setenv(ENV_VAR, "num_epochs=1 num_iterations_per_epoch=1 num_val_iterations_per_epoch=1 "
                                "lambda_consistency=1.0")
    trainer = make_trainer(trainer_class, dataset)
    assert trainer.error_channel == 1
    seen = []
    original = WeakBoxLoss.forward

    def spy(self, logits, box_numbers, error_map=None, **kwargs):  # (image_hu too when the affinity term is on)
        seen.append(error_map)
        return original(self, logits, box_numbers, error_map, **kwargs)

    monkeypatch.setattr(WeakBoxLoss, "forward", spy)
    trainer.run_training()
    assert len(seen) == 2 and all(e is not None for e in seen)  # one train and one validation step
    values = torch.unique(torch.cat([e.flatten() for e in seen]))
    assert 0.0 <= values.min() and values.max() <= 1.0
    # validation batches are not augmented: E holds exactly the two values written to the dataset (and nnU-Net's
    # zero padding where a patch reaches beyond the image)
    assert {round(float(v), 4) for v in torch.unique(seen[1])} <= {0.0, E_INSIDE, E_OUTSIDE}
    assert E_OUTSIDE in {round(float(v), 4) for v in torch.unique(seen[1])}
    assert getattr(trainer.loss, "seg_loss", trainer.loss).last_components["consistency"] > 0
    assert "reads the VAE error map E from input channel 1" in Path(trainer.log_file).read_text(encoding="utf-8")


def test_l4_is_skipped_with_one_line_without_e(box_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=1 num_iterations_per_epoch=1 num_val_iterations_per_epoch=1 "
                                "lambda_consistency=0.5")
    trainer = make_trainer(nnUNetTrainerWeakBBox, box_dataset)
    assert trainer.error_channel is None
    trainer.run_training()
    log = Path(trainer.log_file).read_text(encoding="utf-8")
    assert log.count("L4 skipped") == 1 and "no VAE error channel" in log
    assert trainer.loss.last_components["consistency"] == 0.0


@pytest.mark.slow  # 48 real training iterations: a learning outcome, not a unit check
def test_trained_vae_reconstructs_normal_tissue_better_than_fractures(box_dataset: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
    """The anomaly-prior premise on real (tiny) training: the VAE sees normal tissue only, so after training its
    error on normal tissue falls below the untrained network's, and stays below its error at the fractures."""
    monkeypatch.setenv(ENV_VAR, "num_epochs=12 num_iterations_per_epoch=4 num_val_iterations_per_epoch=1 "
                                "vae_box_margin=1")

    def summary(trainer) -> dict:
        trainer.perform_actual_validation()
        return json.loads((Path(trainer.output_folder) / "validation" / "vae_summary.json").read_text(encoding="utf-8"))["pooled"]

    torch.manual_seed(0)
    untrained = make_trainer(nnUNetTrainerNormalVAE, box_dataset)
    untrained.initialize()
    before = summary(untrained)
    torch.manual_seed(0)
    trained = make_trainer(nnUNetTrainerNormalVAE, box_dataset)
    trained.run_training()
    after = summary(trained)
    assert after["mean_outside"] < before["mean_outside"]
    assert after["mean_inside"] > after["mean_outside"]
    # training widened the gap: what it learned is normal tissue, not just any input
    assert after["ratio_inside_outside"] > before["ratio_inside_outside"]
