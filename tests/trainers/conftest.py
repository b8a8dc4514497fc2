"""Fixtures of the trainer tests: the tiny mask and weak-box datasets installed in a test's own nnU-Net folders,
with tiny plans (tests/trainer_helpers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainer_helpers import prepared_weak, with_tiny_plans


@pytest.fixture
def mask_dataset(tiny_dataset_cache, nnunet_env) -> Path:
    """The tiny sphere dataset (full masks, ID 987)."""
    from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, install

    install(tiny_dataset_cache, nnunet_env)
    return with_tiny_plans(DATASET_ID, nnunet_env["nnUNet_preprocessed"] / DATASET_NAME)


@pytest.fixture
def box_dataset(weak_dataset_cache, nnunet_env) -> Path:
    """The tiny weak-box dataset (box numbers as labels, ID 988)."""
    return prepared_weak(weak_dataset_cache, nnunet_env, "box")
