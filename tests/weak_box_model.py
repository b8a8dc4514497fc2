"""A weak-box model trained and run through the stock commands once per test session, for the end-to-end tests
that need "a trained weak model and its probabilities" (the weak-box trainer's two-fold ensemble test, the
self-training test).

The tiny weak-box dataset (tests/weak_box_tiny_dataset.py) with the trainer tests' tiny plans, in the session's
own nnU-Net folders: stock ``nnUNetv2_train -tr nnUNetTrainerWeakBBox`` on folds 0 and 1 (one epoch of two
iterations each, no final validation), then stock ``nnUNetv2_predict -f 0 1`` of all five training images with
probabilities. Tests read it and copy what they change.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from nnunet_fracture.stock_commands import predict_command, run_stock
from nnunet_fracture.training.settings import ENV_VAR
from nnunet_tiny_dataset import quiet_env
from trainer_helpers import with_tiny_plans
from weak_box_tiny_dataset import DATASETS, install_weak

TRAINER = "nnUNetTrainerWeakBBox"
FOLDS = ("0", "1")
SCHEDULE = "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 final_validation=false"


@dataclass(frozen=True)
class WeakBoxModel:
    """What the session's weak-box training left.

    Attributes:
        model: the trainer's output folder (``fold_0``, ``fold_1``).
        train_outputs: what each fold's ``nnUNetv2_train`` printed, in fold order.
        predictions: ``nnUNetv2_predict``'s output for every training image (``.npz`` probabilities, ``.pkl``).
    """

    model: Path
    train_outputs: tuple[str, ...]
    predictions: Path


def trained_weak_box_model(cache: Path, root: Path) -> WeakBoxModel:
    """Install the cached weak-box dataset under ``root``, train it and predict its training images."""
    from nnunet_fracture.trainer_discovery import trainer_path

    folders = {name: root / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    dataset_id, name = DATASETS["box"]
    env = quiet_env(**folders, nnUNet_extTrainer=trainer_path())
    with pytest.MonkeyPatch.context() as patch:  # the tiny-plans writer reads nnUNet_preprocessed in-process
        for key, value in folders.items():
            patch.setenv(key, str(value))
        install_weak(cache, "box", folders)
        with_tiny_plans(dataset_id, folders["nnUNet_preprocessed"] / name)
    log = root / "commands.log"
    outputs = tuple(run_stock(["nnUNetv2_train", str(dataset_id), "3d_fullres", fold, "-tr", TRAINER,
                               "-p", "nnUNetPlansTiny", "-device", "cpu"], log, {**env, ENV_VAR: SCHEDULE})
                    for fold in FOLDS)
    predictions = root / "predictions"
    run_stock(predict_command(folders["nnUNet_raw"] / name / "imagesTr", predictions, dataset_id, TRAINER,
                              "nnUNetPlansTiny", fold=FOLDS, tta=False), log, env)
    model = folders["nnUNet_results"] / name / f"{TRAINER}__nnUNetPlansTiny__3d_fullres"
    return WeakBoxModel(model, outputs, predictions)
