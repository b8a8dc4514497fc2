"""Build a plugin trainer in-process on a preprocessed tiny dataset (what ``nnUNetv2_train`` does before
``run_training``), for the tests under tests/trainers/."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def load_plans(dataset: Path, plans_name: str = "nnUNetPlansTiny") -> dict:
    """The plans of a preprocessed dataset folder, marked as a fresh (not continued) training."""
    plans = json.loads((dataset / f"{plans_name}.json").read_text(encoding="utf-8"))
    plans["continue_training"] = False
    return plans


def make_trainer(cls: type, dataset: Path, configuration: str = "3d_fullres", plans_name: str = "nnUNetPlansTiny",
                 plans: dict | None = None):
    """``cls`` for fold 0 of ``dataset`` (a folder in nnUNet_preprocessed) on the CPU."""
    dataset_json = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    return cls(plans=load_plans(dataset, plans_name) if plans is None else plans, configuration=configuration,
               fold=0, dataset_json=dataset_json, device=torch.device("cpu"))


def with_tiny_plans(dataset_id: int | str, folder: Path) -> Path:
    """Write the trainer tests' tiny plans (8 features, 16^3 patch, batch 2) for an installed dataset; ``folder``."""
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans

    write_tiny_plans(str(dataset_id), max_features=8, max_patch=16, batch_size=2)
    return folder


def prepared_weak(weak_dataset_cache, nnunet_env: dict[str, Path], weak: str) -> Path:
    """The tiny weak dataset (``"box"`` or ``"slice"``) installed in this test's nnU-Net folders, with tiny plans."""
    from weak_box_tiny_dataset import DATASETS, install_weak

    name = install_weak(weak_dataset_cache(weak), weak, nnunet_env)
    return with_tiny_plans(DATASETS[weak][0], nnunet_env["nnUNet_preprocessed"] / name)


def stock_train_and_predict(trainer_name: str, nnunet_env: dict[str, Path], tmp_path: Path):
    """``nnUNetv2_train`` (1 epoch of 2 iterations, fold 0, tiny plans) and ``nnUNetv2_predict`` of case0 with
    ``trainer_name`` on the tiny sphere dataset, their entry points called in this process (tests/stock_entry.py);
    case0's predicted probabilities."""
    import numpy as np

    from nnunet_fracture.training.settings import ENV_VAR
    from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, quiet_env
    from stock_entry import run_entry_point

    env = quiet_env()
    env[ENV_VAR] = "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 final_validation=false"
    log = tmp_path / "commands.log"
    run_entry_point(["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", trainer_name,
                     "-p", "nnUNetPlansTiny", "-device", "cpu"], log, env)
    images = tmp_path / "images"
    images.mkdir()
    (images / "case0_0000.nii.gz").symlink_to(nnunet_env["nnUNet_raw"] / DATASET_NAME / "imagesTr" / "case0_0000.nii.gz")
    run_entry_point(["nnUNetv2_predict", "-i", images, "-o", tmp_path / "pred", "-d", str(DATASET_ID),
                     "-c", "3d_fullres", "-f", "0", "-tr", trainer_name, "-p", "nnUNetPlansTiny", "-device", "cpu",
                     "--save_probabilities", "--disable_tta"], log, env)
    return np.load(tmp_path / "pred" / "case0.npz")["probabilities"]
