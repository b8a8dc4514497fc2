"""Remove the specks of a segmentation: connected components smaller than a volume in mm^3.

A fully supervised model on this task leaves most of its false positives as small islands of a few dozen voxels in
healthy bone, while a fracture it finds is one component of hundreds. nnU-Net's own post-processing
(``nnUNetv2_determine_postprocessing``) only knows "keep the largest component", which would delete every fracture
but one. Here a component survives when its volume reaches ``min_volume_mm3``; the volume is taken in mm^3 with each
file's own spacing, so one threshold holds for cases of any resolution (which is also why this is not a
``postprocessing.pkl`` for ``nnUNetv2_apply_postprocessing``: its functions see voxels, never the spacing).

The threshold is chosen from the labels the model learned from (:func:`min_volume_from_labels`): a fraction of
the typical labelled component's volume in the training dataset's ``labelsTr``. "Typical" is the volume-weighted
median: half of all labelled voxels lie in components of at most this volume. The plain median would not do:
pseudo-mask labels hold dozens of stray few-voxel islands next to their ~30 fractures (on the bench's round labels
the plain median is 2-3 voxels, the weighted one ~600, as on the true masks). Components are 26-connected
(``cc3d``); every foreground label is one mask, and removed voxels become background.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.io.image_files import image_ending, image_stem
from nnunet_fracture.io.json_files import read_json_object
from nnunet_fracture.io.output_folders import staged_folder
from nnunet_fracture.io.reference_grid import array_to_image
from nnunet_fracture.io.verified_writes import write_image

#: Default share of the typical training component's volume below which a predicted component is removed.
DEFAULT_FRACTION = 0.1
CONNECTIVITY = 26


def voxel_volume_mm3(spacing: Sequence[float]) -> float:
    """The volume of one voxel of ``spacing`` (mm, any axis order)."""
    if len(spacing) != 3 or any(not s > 0 for s in spacing):
        raise ValueError(f"spacing {tuple(spacing)}: expected three positive values in mm")
    return float(np.prod(spacing))


def component_sizes(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 26-connected components of the boolean ``foreground``: their label map (0 outside) and their sizes in
    voxels, indexed by label (``sizes[0]`` counts the background)."""
    import cc3d

    labels, n = cc3d.connected_components(foreground, connectivity=CONNECTIVITY, return_N=True)
    return labels, np.bincount(labels.ravel(), minlength=n + 1)


def removal_totals(record: dict) -> tuple[int, int]:
    """Components and voxels removed over all cases of a :func:`clean_prediction_folder` record."""
    cases = record["cases"].values()
    return sum(c["components_removed"] for c in cases), sum(c["voxels_removed"] for c in cases)


def remove_small_components(segmentation: np.ndarray, spacing: Sequence[float],
                            min_volume_mm3: float) -> tuple[np.ndarray, int]:
    """``segmentation`` without its foreground components under ``min_volume_mm3``, and how many were removed.

    Args:
        segmentation: 3D integer label map; every value > 0 is foreground (one mask).
        spacing: voxel size in mm along the array's axes.
        min_volume_mm3: a component is kept when its volume is at least this (0 keeps everything).

    Raises:
        ValueError: a segmentation that is not 3D, a bad spacing or a negative volume.
    """
    if segmentation.ndim != 3:
        raise ValueError(f"segmentation of shape {segmentation.shape}: expected a 3D label map")
    if not min_volume_mm3 >= 0:
        raise ValueError(f"min_volume_mm3={min_volume_mm3}: expected a volume >= 0 in mm^3")
    min_voxels = int(np.ceil(min_volume_mm3 / voxel_volume_mm3(spacing) - 1e-9))
    foreground = segmentation > 0
    if min_voxels <= 1 or not foreground.any():
        return segmentation.copy(), 0
    labels, sizes = component_sizes(foreground)
    small = np.flatnonzero(sizes < min_voxels)
    small = small[small > 0]
    out = segmentation.copy()
    out[np.isin(labels, small)] = 0
    return out, int(small.size)


def labelled_component_volumes(dataset_folder: Path) -> list[float]:
    """Volumes in mm^3 of the 26-connected foreground components of every label file in ``dataset_folder/labelsTr``
    (foreground: the label values of ``dataset.json`` other than background and ``ignore``).

    Raises:
        FileNotFoundError: no ``dataset.json`` or no label files (the message names the folder and the fix).
    """
    dataset_folder = Path(dataset_folder)
    meta = dataset_folder / "dataset.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} does not exist. Fix: pass the raw dataset the model was trained on (an ID "
                                f"under $nnUNet_raw or its folder).")
    info = read_json_object(meta, "restore the dataset.json of the converted dataset")
    ending = info.get("file_ending", ".nii.gz")
    ignore = {int(v) for k, v in info.get("labels", {}).items() if k == "ignore"}
    files = sorted(p for p in (dataset_folder / "labelsTr").glob(f"*{ending}") if image_stem(p.name))
    if not files:
        raise FileNotFoundError(f"{dataset_folder / 'labelsTr'} holds no {ending} label files. Fix: pass the raw "
                                f"dataset the model was trained on.")
    volumes: list[float] = []
    for path in files:
        image = sitk.ReadImage(str(path))
        labels = sitk.GetArrayFromImage(image)
        foreground = (labels > 0) & ~np.isin(labels, list(ignore))
        sizes = component_sizes(foreground)[1][1:]
        volumes.extend(float(s) * voxel_volume_mm3(image.GetSpacing()) for s in sizes)
    return volumes


def typical_volume(volumes: Sequence[float]) -> float:
    """The volume-weighted median of ``volumes``: the smallest v such that the components of volume <= v hold at
    least half of the total volume.

    Raises:
        ValueError: no volumes.
    """
    if len(volumes) == 0:
        raise ValueError("no component volumes to take the typical one of")
    ordered = np.sort(np.asarray(volumes, dtype=float))
    cumulative = np.cumsum(ordered)
    return float(ordered[np.searchsorted(cumulative, cumulative[-1] / 2)])


def min_volume_from_labels(dataset_folder: Path, fraction: float = DEFAULT_FRACTION) -> dict:
    """The threshold ``fraction`` x the :func:`typical_volume` of ``dataset_folder``'s labelled components (mm^3),
    with the numbers it came from: ``{"min_volume_mm3", "fraction", "typical_component_mm3", "components",
    "dataset"}``.

    Raises:
        ValueError: ``fraction`` outside (0, 1], or a dataset without labelled components.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}: expected a share of the typical component volume in (0, 1]")
    volumes = labelled_component_volumes(dataset_folder)
    if not volumes:
        raise ValueError(f"{Path(dataset_folder) / 'labelsTr'} holds no foreground voxels, so there is no fracture "
                         f"volume to scale from. Fix: pass --min-volume in mm^3 instead.")
    typical = typical_volume(volumes)
    return {"min_volume_mm3": fraction * typical, "fraction": fraction, "typical_component_mm3": typical,
            "components": len(volumes), "dataset": str(Path(dataset_folder).absolute())}


def clean_prediction_folder(predictions: Path, out: Path, min_volume_mm3: float, overwrite: bool = False,
                            provenance: dict | None = None) -> dict:
    """Write ``predictions`` (an ``nnUNetv2_predict`` output folder) to ``out`` with every segmentation's components
    under ``min_volume_mm3`` removed; probabilities and nnU-Net's files are copied unchanged, and
    ``postprocessing.json`` records the threshold and what was removed per case. The whole folder or nothing is
    written (an existing ``out`` only with ``overwrite``). Returns that record.

    Raises:
        FileNotFoundError: ``predictions`` missing or without segmentations.
        FileExistsError: ``out`` exists and is not empty, without ``overwrite``.
    """
    predictions = Path(predictions)
    if not predictions.is_dir():
        raise FileNotFoundError(f"prediction folder {predictions} does not exist. Fix: pass the -o folder of "
                                f"nnUNetv2_predict.")
    files = sorted(p for p in predictions.iterdir() if p.is_file())
    segmentations = [p for p in files if image_ending(p.name)]
    if not segmentations:
        raise FileNotFoundError(f"prediction folder {predictions} holds no segmentations (<case>.nii.gz). Fix: pass "
                                f"the -o folder of nnUNetv2_predict.")
    record = {"min_volume_mm3": float(min_volume_mm3), "connectivity": CONNECTIVITY, **(provenance or {}),
              "source": str(predictions.absolute()), "cases": {}}
    with staged_folder(Path(out), overwrite, inputs=[predictions]) as tmp:
        for path in files:
            if path not in segmentations:
                shutil.copy2(path, tmp / path.name)
        for path in tqdm(segmentations, desc="remove specks", unit="case"):
            image = sitk.ReadImage(str(path))
            segmentation = sitk.GetArrayFromImage(image)
            kept, removed = remove_small_components(segmentation, image.GetSpacing()[::-1], min_volume_mm3)
            write_image(array_to_image(kept.astype(segmentation.dtype), image), tmp / path.name)
            record["cases"][image_stem(path.name)] = {
                "components_removed": removed,
                "voxels_removed": int(np.count_nonzero(segmentation > 0) - np.count_nonzero(kept > 0))}
        (tmp / "postprocessing.json").write_text(json.dumps(record, indent=2))
    return record


def clean_by_training_labels(predictions: Path, out: Path, dataset_folder: Path, fraction: float = DEFAULT_FRACTION,
                             overwrite: bool = False) -> dict:
    """:func:`clean_prediction_folder` with the threshold of :func:`min_volume_from_labels` (recorded beside it)."""
    threshold = min_volume_from_labels(dataset_folder, fraction)
    return clean_prediction_folder(predictions, out, threshold.pop("min_volume_mm3"), overwrite, provenance=threshold)
