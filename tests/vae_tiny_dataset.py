"""A tiny two-channel weak-box dataset (CT ``_0000`` + a hand-made error channel ``_0001`` named ``noNorm``),
planned and preprocessed by the stock command once per test session; and a VAE trained in-process on the tiny
one-channel weak-box dataset (tests/weak_box_tiny_dataset.py).

The error channel is 0.9 inside every fracture sphere and 0.1 elsewhere, so L4's target is known exactly.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from nnunet_fracture.stock_commands import run_stock
from nnunet_tiny_dataset import quiet_env
from weak_box_tiny_dataset import cases

DATASET_ID, DATASET_NAME = 986, "Dataset986_WeakTinyVAE"
E_INSIDE, E_OUTSIDE = 0.9, 0.1


def preprocessed_two_channel_dataset(cache: Path) -> Path:
    """Build ``cache/{nnUNet_raw,nnUNet_preprocessed}/DATASET_NAME`` once."""
    import SimpleITK as sitk

    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

    if (cache / "done").is_file():
        return cache
    if cache.exists():
        shutil.rmtree(cache)
    raw = cache / "nnUNet_raw"
    raw.mkdir(parents=True)
    records = cases()
    folder = write_raw_dataset(records, DATASET_ID, DATASET_NAME.split("_", 1)[1], weak="box", raw_root=raw)
    for record in records:
        mask = sitk.GetArrayFromImage(record.mask) > 0
        error = sitk.GetImageFromArray(np.where(mask, E_INSIDE, E_OUTSIDE).astype(np.float32))
        error.CopyInformation(record.image)
        sitk.WriteImage(error, str(folder / "imagesTr" / f"{record.case_id}_0001.nii.gz"))
    meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    meta["channel_names"] = {"0": "CT", "1": "noNorm"}
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2))
    env = quiet_env(nnUNet_raw=raw, nnUNet_preprocessed=cache / "nnUNet_preprocessed",
                    nnUNet_results=cache / "nnUNet_results")
    env["nnUNet_n_proc_DA"] = "1"
    run_stock(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1",
               "--verify_dataset_integrity"], cache / "commands.log", env)
    (cache / "done").touch()
    return cache


def install_two_channel(cache: Path, nnunet_env: dict[str, Path]) -> Path:
    """Copy the cached dataset into a test's nnU-Net folders; return its preprocessed folder."""
    for folder in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(cache / folder / DATASET_NAME, nnunet_env[folder] / DATASET_NAME)
    return nnunet_env["nnUNet_preprocessed"] / DATASET_NAME
