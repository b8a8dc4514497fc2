"""Tiny weak-box datasets (box and slice modes), written by the plugin's converter and planned and preprocessed
by the stock command once per test session.

Five 24^3 "CT" volumes; cases 0-3 hold a bright sphere ("fracture", ground truth) inside a loose box (grown by
2 voxels), case 1 a second sphere with its own box, case 4 is fracture-free. Box mode labels hold box numbers,
slice mode labels whole slices.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from nnunet_fracture.stock_commands import run_stock
from nnunet_tiny_dataset import quiet_env

EDGE = 24
DATASETS = {"box": (988, "Dataset988_WeakTinyBox"), "slice": (989, "Dataset989_WeakTinySlice")}


def cases():
    import SimpleITK as sitk

    from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox

    rng = np.random.default_rng(3)
    z, y, x = np.mgrid[:EDGE, :EDGE, :EDGE]
    out = []
    for i in range(5):
        spheres = []
        if i < 4:
            spheres.append((rng.uniform(8, 16, 3), rng.uniform(3, 4)))
        if i == 1:
            spheres.append((np.array([5.0, 5.0, 18.0]), 2.5))
        mask = np.zeros((EDGE,) * 3, dtype=np.uint8)
        boxes = []
        for centre, radius in spheres:
            sphere = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < radius ** 2
            mask |= sphere.astype(np.uint8)
            k, j, ii = np.nonzero(sphere)
            lo = [max(0, int(v.min()) - 2) for v in (ii, j, k)]
            hi = [min(EDGE - 1, int(v.max()) + 2) for v in (ii, j, k)]
            boxes.append(VoxelBox(tuple(lo), tuple(hi)))
        image = (rng.normal(0, 30, mask.shape) + 400.0 * mask).astype(np.int16)
        itk = sitk.GetImageFromArray(image)
        mask_itk = sitk.GetImageFromArray(mask)
        mask_itk.CopyInformation(itk)
        out.append(CaseRecord(f"case{i}", itk, boxes, mask=mask_itk))
    return out


def preprocessed_weak_dataset(cache: Path, weak: str) -> Path:
    """Build ``cache/{nnUNet_raw,nnUNet_preprocessed}/<dataset>`` for ``weak`` in ("box", "slice") once."""
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

    dataset_id, name = DATASETS[weak]
    done = cache / "done"
    if done.is_file():
        return cache
    if cache.exists():
        shutil.rmtree(cache)
    (cache / "nnUNet_raw").mkdir(parents=True)
    write_raw_dataset(cases(), dataset_id, name.split("_", 1)[1], weak=weak, raw_root=cache / "nnUNet_raw")
    env = quiet_env(nnUNet_raw=cache / "nnUNet_raw", nnUNet_preprocessed=cache / "nnUNet_preprocessed",
                    nnUNet_results=cache / "nnUNet_results")
    env["nnUNet_n_proc_DA"] = "1"  # the planner fails with 0
    run_stock(["nnUNetv2_plan_and_preprocess", "-d", str(dataset_id), "-c", "3d_fullres", "-np", "1", "-npfp", "1",
               "--verify_dataset_integrity"], cache / "commands.log", env)
    done.touch()
    return cache


def install_weak(cache: Path, weak: str, nnunet_env: dict[str, Path]) -> str:
    """Copy the cached dataset into a test's nnU-Net folders; return the dataset folder name."""
    name = DATASETS[weak][1]
    for folder in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(cache / folder / name, nnunet_env[folder] / name)
    return name
