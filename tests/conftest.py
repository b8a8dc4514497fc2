"""Shared test fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def nnunet_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point nnU-Net's three folders (and nnUNet_extTrainer) at fresh temporary folders for one test.

    nnunetv2.paths reads the variables lazily in 2.8.1, so setting them here is enough for both in-process
    calls and subprocesses started by the test (they inherit os.environ).
    """
    from nnunet_fracture.trainer_discovery import trainer_path

    folders = {}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))
        folders[name] = folder
    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_path()))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("nnUNet_compile", "f")
    for workers in ("nnUNet_npp", "nnUNet_nps"):  # nnUNetv2_predict without worker processes (sequential mode)
        monkeypatch.setenv(workers, "0")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    return folders


@pytest.fixture(scope="session")
def tiny_dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny sphere dataset, planned and preprocessed by the stock command once per session
    (see tests/nnunet_tiny_dataset.py); tests copy it into their own folders with ``install``."""
    from nnunet_tiny_dataset import preprocessed_dataset

    return preprocessed_dataset(tmp_path_factory.getbasetemp() / "nnunet_tiny_dataset")


@pytest.fixture(scope="session")
def weak_dataset_cache(tmp_path_factory: pytest.TempPathFactory):
    """``weak_dataset_cache("box" | "slice")``: tiny weak-label datasets, preprocessed once per session
    (see tests/weak_box_tiny_dataset.py)."""
    from weak_box_tiny_dataset import preprocessed_weak_dataset

    built: dict[str, Path] = {}

    def get(weak: str) -> Path:
        if weak not in built:
            built[weak] = preprocessed_weak_dataset(tmp_path_factory.getbasetemp() / f"weak_{weak}_dataset", weak)
        return built[weak]

    return get


@pytest.fixture(scope="session")
def weak_box_model(weak_dataset_cache, tmp_path_factory: pytest.TempPathFactory):
    """The tiny weak-box dataset trained (folds 0 and 1) and its training images predicted (both folds ensembled)
    through the stock commands, once per session (see tests/weak_box_model.py). Read-only: copy what you change."""
    from weak_box_model import trained_weak_box_model

    return trained_weak_box_model(weak_dataset_cache("box"), tmp_path_factory.mktemp("weak_box_model"))
