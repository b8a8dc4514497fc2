"""A tiny synthetic nnU-Net dataset, planned and preprocessed by the stock command once per test session.

Five 24^3 int16 "CT" volumes with one bright sphere each (label 1). Independent of the plugin's converters and
phantom generator on purpose: trainer and planning tests must not break when those change.

Test modules get it through the session fixture ``tiny_dataset_cache`` (conftest.py); ``install`` copies it
into a test's own nnU-Net folders. pytest puts ``tests/`` on ``sys.path`` because of ``tests/conftest.py``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from nnunet_fracture.stock_commands import run_stock

DATASET_ID = 987
DATASET_NAME = f"Dataset{DATASET_ID:03d}_FractureTiny"
EDGE = 24
N_CASES = 5


def quiet_env(**folders: Path | str) -> dict[str, str]:
    """os.environ plus nnU-Net folders and the settings that keep subprocesses light on CPU."""
    env = {**os.environ, **{k: str(v) for k, v in folders.items()}}
    env.update(nnUNet_n_proc_DA="0", nnUNet_compile="f", nnUNet_def_n_proc="1", nnUNet_npp="0", nnUNet_nps="0",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    return env


def write_raw_dataset(raw_root: Path) -> Path:
    """Write ``raw_root/DATASET_NAME`` (imagesTr, labelsTr, dataset.json) and return it."""
    import SimpleITK as sitk

    folder = raw_root / DATASET_NAME
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:EDGE, :EDGE, :EDGE]
    for i in range(N_CASES):
        centre, radius = rng.uniform(9, 15, 3), rng.uniform(4, 6)
        sphere = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < radius ** 2
        image = (rng.normal(0, 30, sphere.shape) + 400 * sphere).astype(np.int16)
        for array, path in ((image, folder / "imagesTr" / f"case{i}_0000.nii.gz"),
                            (sphere.astype(np.uint8), folder / "labelsTr" / f"case{i}.nii.gz")):
            itk = sitk.GetImageFromArray(array)
            itk.SetSpacing((1.0, 1.0, 1.0))
            sitk.WriteImage(itk, str(path))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "fracture": 1},
        "numTraining": N_CASES, "file_ending": ".nii.gz"}))
    return folder


def preprocessed_dataset(cache: Path) -> Path:
    """Build ``cache/{nnUNet_raw,nnUNet_preprocessed}/DATASET_NAME`` once (stock planning + preprocessing)."""
    done = cache / "done"
    if done.is_file():
        return cache
    if cache.exists():
        shutil.rmtree(cache)
    write_raw_dataset(cache / "nnUNet_raw")
    env = quiet_env(nnUNet_raw=cache / "nnUNet_raw", nnUNet_preprocessed=cache / "nnUNet_preprocessed",
                    nnUNet_results=cache / "nnUNet_results")
    # the planner calls torch.set_num_threads(get_allowed_n_proc_DA()), which fails for nnUNet_n_proc_DA=0
    env["nnUNet_n_proc_DA"] = "1"
    run_stock(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1",
               "--verify_dataset_integrity"], cache / "commands.log", env)
    done.touch()
    return cache


def install(cache: Path, nnunet_env: dict[str, Path]) -> None:
    """Copy the cached raw and preprocessed dataset into a test's nnU-Net folders (fixture ``nnunet_env``)."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(cache / name / DATASET_NAME, nnunet_env[name] / DATASET_NAME)
