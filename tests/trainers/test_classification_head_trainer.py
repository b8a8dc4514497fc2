"""nnUNetTrainerClsHead and nnUNetTrainerWeakBBoxClsHead in-process on tiny datasets, and through the stock
nnUNetv2_train / nnUNetv2_predict."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_fracture.losses import WeakBoxLoss
from nnunet_fracture.losses.classification_head import ClassificationHeadLoss
from nnunet_fracture.networks.classification_head import ClassificationHeadNetwork
from nnunet_fracture.trainers import (nnUNetTrainerAttentionUNet, nnUNetTrainerClsHead,
                                      nnUNetTrainerSliceLSTMClsHead, nnUNetTrainerWeakBBox,
                                      nnUNetTrainerWeakBBoxClsHead)
from nnunet_fracture.evaluation.detection_metrics import detection_metrics
from nnunet_fracture.trainers.classification_head import CLS_LOG_KEYS
from nnunet_fracture.training.box_validation import LOG_KEYS
from nnunet_fracture.training.settings import ENV_VAR
from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, quiet_env
from stock_entry import run_entry_point
from weak_box_tiny_dataset import DATASETS
from trainer_helpers import make_trainer

SHORT = "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=2"


def test_auc_by_hand():
    scores, labels = np.array([0.9, 0.4, 0.4, 0.1]), np.array([1.0, 1.0, 0.0, 0.0])
    # the head's validation AUC comes from evaluation's detection_metrics (scikit-learn);
    # pairs 0.9>0.4, 0.9>0.1, 0.4>0.1 and the tie 0.4=0.4
    assert detection_metrics(scores, labels).roc_auc == pytest.approx((2 + 1 + 0.5) / 4)
    assert math.isnan(detection_metrics(scores, np.zeros(4)).roc_auc)


def test_mro_puts_the_weak_box_loss_inside_the_classification_loss():
    mro = nnUNetTrainerWeakBBoxClsHead.__mro__
    assert mro.index(nnUNetTrainerClsHead) < mro.index(nnUNetTrainerWeakBBox)
    assert nnUNetTrainerWeakBBoxClsHead.validation_step is nnUNetTrainerClsHead.validation_step


def test_mask_trainer_network_loss_and_training(mask_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, SHORT + " weight_seg=0.25")
    trainer = make_trainer(nnUNetTrainerClsHead, mask_dataset)
    trainer.initialize()
    assert isinstance(trainer.network, ClassificationHeadNetwork) and trainer.network.activation == "softmax"
    assert trainer.network.head.dropout.p == 0.2
    assert isinstance(trainer.loss, ClassificationHeadLoss)
    assert isinstance(trainer.loss.seg_loss, DeepSupervisionWrapper)
    assert (trainer.loss.weight_cls, trainer.loss.weight_seg) == (1.0, 0.25)
    trainer.was_initialized = False  # run_training initialises again
    trainer.run_training()
    logged = trainer.logger.local_logger.my_fantastic_logging
    for key in CLS_LOG_KEYS:
        assert len(logged[key]) == 1
    assert 0 <= logged["cls_accuracy"][0] <= 1
    assert "classification head: accuracy" in Path(trainer.log_file).read_text(encoding="utf-8")
    checkpoint = torch.load(Path(trainer.output_folder) / "checkpoint_final.pth", weights_only=False)
    assert checkpoint["network_weights"]["_extra_state"] == {"activation": "softmax"}
    assert any(k.startswith("head.") for k in checkpoint["network_weights"])


def test_weak_box_combination(box_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, SHORT)
    trainer = make_trainer(nnUNetTrainerWeakBBoxClsHead, box_dataset)
    trainer.initialize()
    assert trainer.network.activation == "sigmoid"  # one region: sigmoid fusion
    assert isinstance(trainer.loss, ClassificationHeadLoss) and isinstance(trainer.loss.seg_loss, WeakBoxLoss)
    train_gen, _ = trainer.get_dataloaders()
    batch = next(train_gen)
    output = trainer.network(batch["data"])
    loss = trainer.loss(output, batch["target"])
    components = trainer.loss.last_components
    assert loss.item() == pytest.approx(components["classification"] + 0.1 * components["segmentation"], rel=1e-5)
    assert components["segmentation"] == pytest.approx(trainer.loss.seg_loss.last_components["total"], rel=1e-6)
    trainer.was_initialized = False
    trainer.run_training()
    logged = trainer.logger.local_logger.my_fantastic_logging
    for key in CLS_LOG_KEYS + LOG_KEYS:
        assert len(logged[key]) == 1
    assert "box-aware validation" in Path(trainer.log_file).read_text(encoding="utf-8")


def test_composes_with_the_attention_unet(mask_dataset: Path):
    class nnUNetTrainerAttentionClsHeadProbe(nnUNetTrainerClsHead, nnUNetTrainerAttentionUNet):
        pass

    trainer = make_trainer(nnUNetTrainerAttentionClsHeadProbe, mask_dataset)
    trainer.initialize()
    plain = make_trainer(nnUNetTrainerAttentionUNet, mask_dataset)
    plain.initialize()
    assert isinstance(trainer.network, ClassificationHeadNetwork)
    assert type(trainer.network.net) is type(plain.network)
    batch = next(trainer.get_dataloaders()[0])
    output = trainer.network(batch["data"])
    assert torch.isfinite(trainer.loss(output, batch["target"]))


def test_slice_lstm_per_slice_head(mask_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=1 num_iterations_per_epoch=1 num_val_iterations_per_epoch=1")
    trainer = make_trainer(nnUNetTrainerSliceLSTMClsHead, mask_dataset)
    trainer.run_training()
    assert type(trainer.network.net).__name__ == "SliceLSTMUNet"
    patch = trainer.configuration_manager.patch_size
    logits = trainer.network.class_logits
    assert logits.shape[1:] == (1, patch[0], 1, 1)  # one logit per slice
    assert len(trainer.logger.local_logger.my_fantastic_logging["cls_auc"]) == 1
    assert (Path(trainer.output_folder) / "checkpoint_final.pth").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("trainer_name, weak", [("nnUNetTrainerClsHead", None),
                                                ("nnUNetTrainerWeakBBoxClsHead", "box")])
def test_stock_train_and_predict(trainer_name: str, weak, request, nnunet_env, tmp_path: Path):
    dataset = request.getfixturevalue("box_dataset" if weak else "mask_dataset")
    dataset_id, name = (DATASETS["box"] if weak else (DATASET_ID, DATASET_NAME))
    env = quiet_env()
    env[ENV_VAR] = "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 final_validation=false"
    log = tmp_path / "commands.log"
    out = run_entry_point(["nnUNetv2_train", str(dataset_id), "3d_fullres", "0", "-tr", trainer_name,
                           "-p", "nnUNetPlansTiny", "-device", "cpu"], log, env)
    assert "classification head: accuracy" in out
    model = nnunet_env["nnUNet_results"] / name / f"{trainer_name}__nnUNetPlansTiny__3d_fullres"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()

    images = tmp_path / "images"
    images.mkdir()
    (images / "case0_0000.nii.gz").symlink_to(nnunet_env["nnUNet_raw"] / name / "imagesTr" / "case0_0000.nii.gz")
    predicted = tmp_path / "predicted"
    run_entry_point(["nnUNetv2_predict", "-i", images, "-o", predicted, "-d", str(dataset_id), "-c", "3d_fullres",
                     "-f", "0", "-tr", trainer_name, "-p", "nnUNetPlansTiny", "-device", "cpu", "--save_probabilities"],
                    log, env)
    probabilities = np.load(predicted / "case0.npz")["probabilities"]
    assert probabilities.shape == ((1,) if weak else (2,)) + (24, 24, 24)
    assert np.isfinite(probabilities).all() and 0 <= probabilities.min() and probabilities.max() <= 1
    if not weak:
        assert np.allclose(probabilities.sum(axis=0), 1, atol=1e-3)
    assert dataset.is_dir()
