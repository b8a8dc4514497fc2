"""Fixtures of the inference tests."""
from pathlib import Path

import pytest

from pseudo_mask_cases import source_dataset


@pytest.fixture
def src(nnunet_env) -> Path:
    """The tiny source dataset of ``pseudo_mask_cases`` (raw dataset 501) in this test's nnUNet_raw."""
    return source_dataset(nnunet_env["nnUNet_raw"])
