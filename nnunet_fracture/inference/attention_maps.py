"""Export an attention U-Net's attention coefficients for one case, on the CT's own voxel grid.

The case is preprocessed exactly as ``nnUNetv2_predict`` does it (the model's plans: transpose, crop, resample,
normalize) and run over nnU-Net's sliding-window tiles (:mod:`~nnunet_fracture.inference.attention_stitching`). For
every tile the network's attention coefficients (one map per skip connection, see
:class:`~nnunet_fracture.networks.attention_unet.AttentionUNet`) are brought to the tile's resolution (linear
interpolation) and stitched with the same Gaussian tile weights the predictor gives the logits. Each level's map
then goes back to the CT's grid through nnU-Net's own export (resampling with the plans' probability resampling,
uncropping, transposition), with the identity in place of softmax/sigmoid; outside the region nnU-Net cropped away
(background outside the body's bounding box) the coefficient is 0.

Differences from ``nnUNetv2_predict``: one fold, no test-time mirroring (the coefficients are those of the unmirrored
pass), no ``torch.compile``.

Output folder (written to a temporary folder next to it, then moved into place)::

    attention_level<L>.nii.gz   float32 coefficients in [0, 1], CT grid (size, spacing, origin, direction)
    attention_level<L>.png      axial, coronal, sagittal views on the CT through one point
    attention_maps.json         provenance: model, fold, checkpoint, case files, per-level grid and statistics

Level 0 is the highest-resolution skip connection (the gate nearest the output), the last level the one next to the
bottleneck.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch

import nnunet_fracture
from nnunet_fracture.inference import image_grid
from nnunet_fracture.inference.attention_stitching import AttentionMapPredictor
from nnunet_fracture.io.image_files import IMAGE_ENDINGS
from nnunet_fracture.io.output_folders import replace_folder
from nnunet_fracture.io.reference_grid import array_to_image
from nnunet_fracture.io.verified_writes import write_image
from nnunet_fracture.visualization.attention_figure import level_figure
from nnunet_fracture.visualization.overlay_layers import BONE_WINDOW, CTWindow, save_figure

PROVENANCE = "attention_maps.json"


def level_file(level: int, suffix: str = ".nii.gz") -> str:
    """Name of level ``level``'s output file."""
    return f"attention_level{level}{suffix}"


# --- case ------------------------------------------------------------------------------------------------------------
def _channel_files(first: Path, n_channels: int) -> list[Path]:
    name = first.name
    ending = next((e for e in IMAGE_ENDINGS if name.endswith(e)), None)
    stem = name[: -len(ending)] if ending else None
    if n_channels == 1:
        return [first]
    if stem is None or not stem.endswith("_0000"):
        raise ValueError(f"the model takes {n_channels} input channels, so give the first channel's file "
                         f"<case>_0000{ending or '.nii.gz'} (the others are found beside it), not {first}")
    files = [first.with_name(f"{stem[:-5]}_{c:04d}{ending}") for c in range(n_channels)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"the model takes {n_channels} input channels but {', '.join(missing)} "
                                f"{'is' if len(missing) == 1 else 'are'} missing. Fix: put every channel's file "
                                f"beside {first}.")
    return files


def resolve_case(case: str | Path, model: Path, dataset_json: dict, dataset: Optional[str | int | Path] = None
                 ) -> tuple[str, list[Path]]:
    """``(case id, one file per input channel)`` for an image file or a case id of a raw dataset.

    A case id is looked up as ``imagesTr/<case>_0000<ending>`` (then ``imagesTs/``) of ``dataset`` (ID, name or
    folder), by default the raw dataset the model was trained on ($nnUNet_raw/<the model folder's parent's name>).

    Raises:
        FileNotFoundError: no such file or case (the message lists where it looked).
    """
    n_channels = len(dataset_json.get("channel_names", dataset_json.get("modality", {"0": "CT"})))
    path = Path(case)
    if path.is_file():
        files = _channel_files(path, n_channels)
        name = path.name
        for ending in IMAGE_ENDINGS:
            if name.endswith(ending):
                name = name[: -len(ending)]
                break
        return (name[:-5] if name.endswith("_0000") else name), files
    if path.suffix or os.sep in str(case):
        raise FileNotFoundError(f"image file {path} does not exist. Fix: pass an existing CT file or a case id "
                                f"of the raw dataset.")
    from nnunet_fracture.dataset_conversion.source_dataset import resolve_dataset_folder

    folder = resolve_dataset_folder(dataset if dataset is not None else model.parent.name)
    ending = dataset_json.get("file_ending", ".nii.gz")
    tried = [folder / sub / f"{case}_0000{ending}" for sub in ("imagesTr", "imagesTs")]
    for first in tried:
        if first.is_file():
            return str(case), _channel_files(first, n_channels)
    raise FileNotFoundError(f"case {case!r} not found: tried {', '.join(str(t) for t in tried)}. Fix: pass the "
                            f"case id as it appears in imagesTr (without _0000{ending}), --dataset for another raw "
                            f"dataset, or the image file itself.")


# --- export ----------------------------------------------------------------------------------------------------------
def to_image_grid(maps: np.ndarray, properties: dict, plans_manager, configuration_manager) -> list[np.ndarray]:
    """Each level's map (preprocessed grid) on the grid of the image as the plans' reader read it, via nnU-Net's
    export (resampling, uncropping, transposition) with the identity as nonlinearity; 0 outside the crop."""
    return [np.clip(image_grid.to_image_grid(maps[level:level + 1], properties, plans_manager, configuration_manager,
                                             num_threads_torch=max(1, torch.get_num_threads())), 0.0, 1.0)
            for level in range(maps.shape[0])]


def _view_point(ct: sitk.Image, display: sitk.Image, point_ijk: Optional[Sequence[int]]) -> tuple[int, int, int]:
    size = ct.GetSize()
    ijk = [s // 2 for s in size] if point_ijk is None else [int(v) for v in point_ijk]
    if len(ijk) != 3 or not all(0 <= v < s for v, s in zip(ijk, size)):
        raise ValueError(f"--point {tuple(point_ijk or ())} lies outside the CT of size (i, j, k) {size}. Fix: give "
                         f"three voxel indices i j k with 0 <= i < {size[0]}, 0 <= j < {size[1]}, 0 <= k < {size[2]}.")
    index = display.TransformPhysicalPointToIndex(ct.TransformIndexToPhysicalPoint(ijk))
    return tuple(int(v) for v in reversed(index))  # type: ignore[return-value]


def _level_spacing_xyz(level_stride: Sequence[int], case_spacing: Sequence[float], plans_manager,
                       configuration_manager) -> list[float]:
    """Voxel size (mm, ITK x, y, z) of a level's grid; ``case_spacing`` is nnU-Net's (array order)."""
    spacing = [float(s) * k for s, k in zip(configuration_manager.spacing, level_stride)]
    if len(spacing) < len(case_spacing):  # 2d configuration: slices keep the case's own spacing
        spacing = [float(case_spacing[plans_manager.transpose_forward[0]]), *spacing]
    array_order = [spacing[i] for i in plans_manager.transpose_backward]
    return [round(v, 4) for v in reversed(array_order)]


def export_attention_maps(model: Path | str, case: str | Path, out: Path | str, fold: str = "0",
                          checkpoint: str = "checkpoint_final.pth", dataset: Optional[str | int | Path] = None,
                          device: Optional[str] = None, tile_step_size: float = 0.5,
                          point_ijk: Optional[Sequence[int]] = None, window: CTWindow = BONE_WINDOW,
                          overwrite: bool = False, trust_checkpoints: bool = False) -> dict:
    """Write one case's attention maps (NIfTI on the CT's grid, PNG views, provenance) into ``out``.

    Args:
        model: trained model folder ``$nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIGURATION``.
        case: a CT file (first channel ``<case>_0000.nii.gz`` for multi-channel models) or a case id of the raw
            dataset (see :func:`resolve_case`).
        out: output folder; written to a temporary folder beside it and moved into place when complete.
        fold: the fold to load (``fold_<fold>``), a number or ``all``.
        checkpoint: checkpoint file name in the fold folder.
        dataset: raw dataset where a case id is looked up (default: the one the model was trained on).
        device: ``cuda``, ``cpu`` or ``mps`` (default cuda when available).
        tile_step_size: sliding-window step as a fraction of the patch (nnU-Net's default 0.5).
        point_ijk: CT voxel (i, j, k) the PNG planes go through (default: the CT's centre).
        window: CT display window of the PNGs.
        overwrite: replace a non-empty ``out``.
        trust_checkpoints: load the checkpoint with pickle unchecked (see :mod:`nnunet_fracture.io.checkpoints`).

    Returns:
        The provenance written to ``attention_maps.json``.

    Raises:
        FileNotFoundError, FileExistsError, ValueError, RuntimeError: with the file and the fix in the message.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file. Fix: name a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} exists and is not empty. Fix: pass --overwrite to replace it, or choose "
                              f"another folder.")
    if not 0 < tile_step_size <= 1:
        raise ValueError(f"tile step size must be in (0, 1], got {tile_step_size}")
    model = Path(model).absolute()
    runner = AttentionMapPredictor.from_model_folder(model, fold, checkpoint, torch.device(device) if device else None,
                                                     tile_step_size, trust_checkpoints)
    plans_manager, configuration_manager = runner.plans_manager, runner.configuration_manager
    reader = plans_manager.plans.get("image_reader_writer", "SimpleITKIO")
    if reader != "SimpleITKIO":
        raise RuntimeError(f"{model / 'plans.json'} reads images with {reader}; attention-maps writes the CT's grid "
                           f"with SimpleITK and supports only SimpleITKIO plans (nnU-Net's choice for .nii.gz, .nrrd, "
                           f".mha). Fix: plan the dataset with the default reader.")
    case_id, files = resolve_case(case, model, runner.dataset_json, dataset)
    resolved = out.resolve()
    for inp in (model, *files):
        inp = inp.resolve()
        if resolved == inp or resolved in inp.parents:
            raise ValueError(f"--out {out} is or contains the input {inp}; replacing it would destroy the input. "
                             f"Fix: choose a separate output folder.")
    ct = sitk.ReadImage(str(files[0]))
    if ct.GetDimension() != 3:
        raise ValueError(f"{files[0]} is a {ct.GetDimension()}D image; attention-maps needs a 3D CT")

    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    data, _, properties = preprocessor.run_case([str(f) for f in files], None, plans_manager, configuration_manager,
                                                runner.dataset_json)
    maps = runner.predict(torch.from_numpy(np.ascontiguousarray(data)))
    arrays = to_image_grid(maps, properties, plans_manager, configuration_manager)
    expected = tuple(reversed(ct.GetSize()))
    for array in arrays:
        if tuple(array.shape) != expected:  # a reader that reorders axes would end up here
            raise RuntimeError(f"attention map of shape {array.shape} does not match the CT {files[0]} of array shape "
                               f"{expected}; this plans/reader combination is not supported")

    strides = runner.network.attention_strides() if hasattr(runner.network, "attention_strides") else \
        [None] * len(arrays)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        from nnunet_fracture.visualization.case_volumes import to_display

        ct_display_image = to_display(ct)
        ct_display = sitk.GetArrayFromImage(ct_display_image).astype(np.float32)
        spacing_zyx = tuple(float(s) for s in reversed(ct_display_image.GetSpacing()))
        point = _view_point(ct, ct_display_image, point_ijk)
        levels = []
        for level, (array, stride) in enumerate(zip(arrays, strides)):
            image = array_to_image(array, ct)
            write_image(image, tmp / level_file(level))
            voxel = _level_spacing_xyz(stride, properties["spacing"], plans_manager, configuration_manager) \
                if stride is not None else None
            title = (f"{case_id}: attention level {level} of {len(arrays)} (0 = highest resolution"
                     + (f"; grid {' x '.join(f'{v:g}' for v in voxel)} mm" if voxel else "")
                     + f")\n{model.name}, fold {fold}; planes through CT voxel (i, j, k) = "
                     f"{tuple(point_ijk) if point_ijk is not None else tuple(s // 2 for s in ct.GetSize())}")
            fig = level_figure(ct_display, sitk.GetArrayFromImage(to_display(image)), spacing_zyx, point, title,
                               window)
            save_figure(fig, tmp / level_file(level, ".png"))
            levels.append({"level": level, "file": level_file(level), "png": level_file(level, ".png"),
                           "network_stride": list(stride) if stride is not None else None,
                           "grid_voxel_size_mm_xyz": voxel, "min": float(array.min()), "max": float(array.max()),
                           "mean": float(array.mean())})
        provenance = {
            "case": case_id, "images": [str(f.absolute()) for f in files], "model": str(model),
            "trainer": runner.predictor.trainer_name, "plans": plans_manager.plans_name,
            "configuration": model.name.rsplit("__", 1)[-1], "fold": str(fold), "checkpoint": checkpoint,
            "network": type(runner.network).__name__, "device": str(runner.predictor.device),
            "tile_step_size": tile_step_size, "test_time_mirroring": False,
            "outside_crop": "0 (nnU-Net cropped this region away before the network)",
            "levels": levels, "date": datetime.now().isoformat(timespec="seconds"),
            "plugin_version": nnunet_fracture.__version__,
        }
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2))
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return provenance
