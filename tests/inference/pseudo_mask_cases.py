"""The tiny source dataset and prediction folders shared by the pseudo-mask and dataset-export tests.

Grid: SIZE (i, j, k) = (6, 5, 4) -> numpy [k, j, i] of shape (4, 5, 6), spacing (0.8, 0.8, 2.5), a permuted
direction and a non-zero origin. Cases (sorted: frac, normal, two):

- frac: B1 = i 0-2, j 0-2, k 0-1 -> numpy [0:2, 0:3, 0:3], 18 voxels, P 0.1 except [0, 0, 0:3] = 0.8 and
  [1, 0, 0] = 0.7 (bimodal); B2 = i 3-5, j 2-4, k 2-3 -> [2:4, 2:5, 3:6], 18 voxels, P 0.02 everywhere (a box the
  model missed); B3 = i 0-2, j 4, k 3 -> [3, 4, 0:3], P (0.1, 0.3, 0.35). Outside every box P = 0 except
  [3, 0, 0] = 0.95 and [2, 0, 0] = 0.6, which must never appear in a mask.
- normal: no box, P = 0.3 everywhere.
- two: overlapping boxes A = i 0-3 and B = i 2-5 on row j = 0, k = 0; P along i = (0.6, 0.6, 0.6, 0.6, 0.2, 0.9).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

SIZE = (6, 5, 4)
SHAPE = SIZE[::-1]
ORIGIN, SPACING, DIRECTION = (1.0, 2.0, 3.0), (0.8, 0.8, 2.5), (0, 1, 0, -1, 0, 0, 0, 0, 1)
B1, B2, B3 = VoxelBox((0, 0, 0), (2, 2, 1), "L1"), VoxelBox((3, 2, 2), (5, 4, 3), "L2"), VoxelBox((0, 4, 3), (2, 4, 3))
BOX_A, BOX_B = VoxelBox((0, 0, 0), (3, 0, 0), "T12"), VoxelBox((2, 0, 0), (5, 0, 0), "L1")


def image(pixel=sitk.sitkInt16, value=-1000, origin=ORIGIN) -> sitk.Image:
    img = sitk.Image(list(SIZE), pixel) + value
    img.SetOrigin(origin)
    img.SetSpacing(SPACING)
    img.SetDirection(DIRECTION)
    return img


def on_grid(array: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.CopyInformation(image())
    return img


def source_dataset(raw: Path) -> Path:
    """Dataset501_Src with ground truth and vertebrae for 'frac' (copied by the export)."""
    gt = np.zeros(SHAPE, np.uint8)
    gt[0, 0, 0:3] = 1
    vert = np.full(SHAPE, 20, np.uint8)
    cases = [CaseRecord("frac", image(), [B1, B2, B3], on_grid(gt), on_grid(vert), "frac.nii.gz"),
             CaseRecord("normal", image(), []), CaseRecord("two", image(), [BOX_A, BOX_B])]
    return write_raw_dataset(cases, 501, "Src", raw_root=raw)


def fold0() -> dict[str, np.ndarray]:
    frac = np.zeros(SHAPE, np.float32)
    frac[0:2, 0:3, 0:3] = 0.1
    frac[0, 0, 0:3] = 0.8
    frac[1, 0, 0] = 0.7
    frac[2:4, 2:5, 3:6] = 0.02
    frac[3, 4, 0:3] = (0.1, 0.3, 0.35)
    frac[3, 0, 0], frac[2, 0, 0] = 0.95, 0.6
    two = np.zeros(SHAPE, np.float32)
    two[0, 0, :] = (0.6, 0.6, 0.6, 0.6, 0.2, 0.9)
    return {"frac": frac, "normal": np.full(SHAPE, 0.3, np.float32), "two": two}


def fold1() -> dict[str, np.ndarray]:
    """Fold 0 with two voxels of B1 changed: [0, 0, 0] 0.8 -> 0.4 and [1, 0, 0] 0.7 -> 0.1."""
    p = fold0()
    p["frac"][0, 0, 0], p["frac"][1, 0, 0] = 0.4, 0.1
    return p


def prediction_folder(folder: Path, probabilities: dict[str, np.ndarray], channels: int = 1,
                      model_files: bool = False, origin=ORIGIN) -> Path:
    """A fake nnUNetv2_predict output folder: <case>.nii.gz segmentation + <case>.npz probabilities."""
    folder.mkdir(parents=True)
    for case, p in probabilities.items():
        stack = p[None] if channels == 1 else np.stack([1 - p, p])
        np.savez_compressed(folder / f"{case}.npz", probabilities=stack.astype(np.float32))
        seg = on_grid((p >= 0.5).astype(np.uint8))
        seg.SetOrigin(origin)
        sitk.WriteImage(seg, str(folder / f"{case}.nii.gz"))
        (folder / f"{case}.pkl").write_bytes(b"")  # nnU-Net writes properties next to them; ignored
    if model_files:
        (folder / "predict_from_raw_data_args.json").write_text(json.dumps(
            {"list_of_lists_or_source_folder": "/data/Dataset501_Src/imagesTr", "output_folder_or_list_of_"
             "truncated_output_files": str(folder), "save_probabilities": True, "overwrite": True,
             "num_processes_preprocessing": 3, "num_processes_segmentation_export": 3,
             "folder_with_segs_from_prev_stage": None, "num_parts": 1, "part_id": 0}))
        (folder / "plans.json").write_text(json.dumps(
            {"dataset_name": "Dataset501_Src", "plans_name": "nnUNetPlansTiny",
             "configurations": {"3d_fullres": {}, "2d": {}}}))
        (folder / "dataset.json").write_text(json.dumps(
            {"labels": {"background": 0, "fracture": [1, 2, 3]}, "regions_class_order": [1],
             "file_ending": ".nii.gz", "nnunet_fracture": {"weak": "box"}}))
    return folder


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def mask_from(indices, value=1) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    for index in indices:
        mask[index] = value
    return mask


def rows(out: Path) -> dict[tuple[str, int], dict]:
    with open(out / "pseudo_masks.csv", newline="") as f:
        return {(r["case"], int(r["box_id"])): r for r in csv.DictReader(f)}


#: the four voxels of box B1 with P >= 0.5 (frac), in array order
B1_HIGH = [(0, 0, 0), (0, 0, 1), (0, 0, 2), (1, 0, 0)]
