"""``nnunet-fracture vae-error``: the VAE reconstruction-error map ``E`` as an extra input channel (phase 2).

For each image, with a VAE trained by ``nnUNetTrainerNormalVAE`` (one or several folds, averaged):

1. nnU-Net's own preprocessing of the VAE's plans (transpose, crop, resample, CT normalisation);
2. ``nnUNetPredictor``'s sliding window with gaussian blending (tile step 0.5) over the whole volume; the VAE in
   eval mode returns its error ``|x - x_hat|`` per voxel, so the predictor blends error maps as it blends logits;
3. nnU-Net's export path back to the original geometry (resample, un-crop, un-transpose), with the identity
   instead of softmax/sigmoid (:data:`ERROR_LABELS`), so the map lies on the CT's exact voxel grid;
4. robust normalisation ``E = clip(error / scale, 0, 1)``, where ``scale`` is the ``percentile``-th percentile of
   the error over normal tissue - the voxels outside every box (labelsTr == 0) of the training cases - so that
   normal tissue mostly lies in [0, 1) and fractures saturate towards 1.

A dataset (:func:`write_error_dataset`) becomes a new raw dataset: every file and folder of the source (imagesTr
CT ``_0000``, labelsTr, groundTruthTr, vertebraeTr, boxes.json, imagesTs ...) plus ``E`` as channel ``_0001``
(after the source's channels) of imagesTr and imagesTs, named ``noNorm`` in ``channel_names`` (nnU-Net then
leaves its values as they are), and ``dataset.json`` ``nnunet_fracture.vae_error`` recording the model, folds,
checkpoint, percentile and ``scale``. New images (:func:`write_error_images`) get the SAME scale, read from that
provenance (or given), so ``nnUNetv2_predict`` sees test cases scaled like the training cases.

Volumes are processed one at a time; the dataset is built in a hidden staging folder and moved into place when
complete (:func:`nnunet_fracture.dataset_conversion.dataset_folders.staged_dataset`).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch
from tqdm import tqdm

from nnunet_fracture.inference.vae_error_model import ErrorMapModel
from nnunet_fracture.inference.vae_error_scale import (DEFAULT_PERCENTILE, SAMPLES_PER_CASE, check_percentile,
                                                       normal_tissue_scale, scale_from_dataset, vae_provenance)
from nnunet_fracture.io.reference_grid import array_to_image
from nnunet_fracture.io.verified_writes import write_image
from nnunet_fracture.training.error_channel import ERROR_CHANNEL_NAME, find_error_channel

def _case_channels(folder: Path, case: str, n_channels: int, file_ending: str) -> list[Path]:
    files = [folder / f"{case}_{c:04d}{file_ending}" for c in range(n_channels)]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"case {case}: {f} does not exist, but the VAE reads {n_channels} channel(s). Fix: "
                                    f"give every case its channel files {case}_0000{file_ending} ...")
    return files


def _cases(folder: Path, file_ending: str) -> list[str]:
    suffix = f"_0000{file_ending}"
    return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))


def _check_channels(model: ErrorMapModel, channel_names: dict, where: str) -> None:
    names = {int(k): v for k, v in channel_names.items()}
    for c, name in model.channel_names.items():
        if c not in names or str(names[c]).casefold() != str(name).casefold():
            raise ValueError(f"{where}: the VAE was trained on channels {model.channel_names} but channel {c} here is "
                             f"{names.get(c)!r}. Fix: use a dataset whose first channels match the VAE's "
                             f"(normally channel 0 'CT').")


def write_error_dataset(dataset: str | int | Path, out_dataset_id: int, vae: Path | str, name: Optional[str] = None,
                        folds: Optional[Sequence[int | str]] = None, checkpoint: str = "checkpoint_final.pth",
                        percentile: float = DEFAULT_PERCENTILE, overwrite: bool = False,
                        device: Optional[torch.device] = None, mirror: bool = False,
                        raw_root: Optional[Path | str] = None, seed: int = 0,
                        trust_checkpoints: bool = False) -> Path:
    """Write ``raw_root/DatasetXXX_NAME``: ``dataset`` plus the normalised error channel (module docstring).

    Args:
        dataset: the source raw dataset (ID, ``DatasetXXX_NAME`` or folder), e.g. written by ``convert``.
        out_dataset_id: nnU-Net ID of the new dataset.
        vae: the VAE's model folder (see :class:`ErrorMapModel`).
        name: name of the new dataset (default ``<source name>VAE``).
        folds, checkpoint, device, mirror, trust_checkpoints: see :class:`ErrorMapModel`.
        percentile: the normal-tissue percentile that maps to 1, in (0, 100].
        overwrite: replace an existing dataset with this ID once the new one is complete.
        raw_root: where to write; default ``$nnUNet_raw``.
        seed: seed of the normal-tissue voxel sample.

    Returns:
        The new dataset folder.

    Raises:
        ValueError, FileNotFoundError, FileExistsError, RuntimeError: with the file / case and the fix.
    """
    from nnunet_fracture.dataset_conversion.case import CASE_ID_PATTERN
    from nnunet_fracture.dataset_conversion.dataset_folders import check_dataset_id_free, staged_dataset
    from nnunet_fracture.dataset_conversion.source_dataset import dataset_id_and_name, resolve_dataset_folder

    percentile = check_percentile(percentile)
    source = resolve_dataset_folder(dataset).absolute()
    meta_file = source / "dataset.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{meta_file} does not exist. Fix: pass a complete nnU-Net raw dataset.")
    meta = json.loads(meta_file.read_text())
    existing = find_error_channel(meta)
    if existing is not None:
        raise ValueError(f"{source} already holds a VAE error channel ({existing}). Fix: pass the dataset it was "
                         f"computed from.")
    file_ending = meta.get("file_ending", ".nii.gz")
    if raw_root is None:
        from nnunet_fracture.environment import nnunet_folder

        raw_root = nnunet_folder("nnUNet_raw")
    raw_root = Path(raw_root)
    source_id, source_name = dataset_id_and_name(source.name)
    if name is None:
        name = source_name + "VAE"
    if not CASE_ID_PATTERN.match(name):
        raise ValueError(f"dataset name {name!r} is not allowed: use letters, digits, '_' and '-' only. Fix: --name.")
    if source_id == out_dataset_id and source.parent.resolve() == raw_root.resolve():
        raise ValueError(f"--out-dataset {out_dataset_id} is the source dataset's own ID. Fix: choose a free ID.")
    check_dataset_id_free(raw_root, out_dataset_id, overwrite, flag="--overwrite")
    model = ErrorMapModel(vae, folds, checkpoint, device, mirror, trust_checkpoints)
    _check_channels(model, meta.get("channel_names", {}), str(meta_file))
    n_source = len(meta["channel_names"])
    channel = n_source  # E comes after the source's channels
    splits = [s for s in ("imagesTr", "imagesTs") if (source / s).is_dir()]
    cases = {s: _cases(source / s, file_ending) for s in splits}
    if not cases.get("imagesTr"):
        raise FileNotFoundError(f"{source / 'imagesTr'} holds no *_0000{file_ending} file. Fix: pass a dataset with "
                                f"training images.")

    rng = np.random.default_rng(seed)
    with staged_dataset(raw_root, out_dataset_id, name, overwrite) as tmp:
        for entry in source.iterdir():
            if entry.name == "dataset.json" or entry.name.startswith("."):
                continue
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
        raw_dir = tmp / ".vae_raw"
        raw_dir.mkdir()
        samples = []
        total = sum(len(v) for v in cases.values())
        with tqdm(total=total, desc=f"VAE error maps of {source.name}", unit="case") as bar:
            for split in splits:
                for case in cases[split]:
                    files = _case_channels(source / split, case, model.n_channels, file_ending)
                    error = model.error_map(files)
                    np.save(raw_dir / f"{split}__{case}.npy", error)
                    label = source / "labelsTr" / f"{case}{file_ending}"
                    if split == "imagesTr":
                        normal = error.ravel() if not label.is_file() else \
                            error[sitk.GetArrayFromImage(sitk.ReadImage(str(label))) == 0]
                        if normal.size > SAMPLES_PER_CASE:
                            normal = normal[rng.choice(normal.size, SAMPLES_PER_CASE, replace=False)]
                        samples.append(normal.astype(np.float32))
                    del error
                    bar.update()
        scale = normal_tissue_scale(samples, percentile)
        del samples
        for split in splits:
            for case in tqdm(cases[split], desc=f"writing channel _{channel:04d} ({split})", unit="case"):
                raw = np.load(raw_dir / f"{split}__{case}.npy")
                reference = sitk.ReadImage(str(source / split / f"{case}_0000{file_ending}"))
                normalised = np.clip(raw / scale, 0.0, 1.0).astype(np.float32)
                write_image(array_to_image(normalised, reference), tmp / split / f"{case}_{channel:04d}{file_ending}")
        shutil.rmtree(raw_dir)
        new_meta = dict(meta)
        new_meta["name"] = f"Dataset{out_dataset_id:03d}_{name}"
        new_meta["channel_names"] = {**{str(k): v for k, v in meta["channel_names"].items()},
                                     str(channel): ERROR_CHANNEL_NAME}
        provenance = dict(meta.get("nnunet_fracture") or {})
        provenance["vae_error"] = vae_provenance(model, channel, scale, percentile, source)
        new_meta["nnunet_fracture"] = provenance
        (tmp / "dataset.json").write_text(json.dumps(new_meta, indent=2) + "\n")
    return raw_root / f"Dataset{out_dataset_id:03d}_{name}"


def write_error_images(images: Path | str, out: Path | str, vae: Path | str, scale: Optional[float] = None,
                       scale_from: Optional[str | int | Path] = None, folds: Optional[Sequence[int | str]] = None,
                       checkpoint: str = "checkpoint_final.pth", file_ending: str = ".nii.gz",
                       overwrite: bool = False, device: Optional[torch.device] = None, mirror: bool = False,
                       trust_checkpoints: bool = False) -> dict:
    """Write ``out/<case>_XXXX<ending>``: each case's channels from ``images`` (copied) plus the error channel,
    normalised with the training dataset's scale - an input folder for ``nnUNetv2_predict``.

    Exactly one of ``scale`` (a number) and ``scale_from`` (the dataset written by :func:`write_error_dataset`)
    must be given; ``scale_from`` also fixes the channel index. ``out`` is built in a hidden folder next to it and
    renamed into place when complete.

    Returns:
        The provenance written to ``out/vae_error.json``.

    Raises:
        ValueError, FileNotFoundError, FileExistsError, RuntimeError: with the file / case and the fix.
    """
    if (scale is None) == (scale_from is None):
        raise ValueError("give exactly one of --scale (a number) and --scale-from (the dataset written by "
                         "`nnunet-fracture vae-error --dataset`, whose dataset.json records the scale)")
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {images} does not exist")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty. Fix: pass --overwrite or choose another --out.")
    cases = _cases(images, file_ending)
    if not cases:
        raise FileNotFoundError(f"{images} holds no <case>_0000{file_ending} file. Fix: name the images like nnU-Net "
                                f"does (e.g. case1_0000{file_ending}).")
    recorded = None
    if scale_from is not None:
        scale, channel, recorded = scale_from_dataset(scale_from)
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"--scale must be a positive number, got {scale!r}")
    model = ErrorMapModel(vae, folds, checkpoint, device, mirror, trust_checkpoints)
    if recorded is None:
        channel = model.n_channels
    elif Path(recorded.get("model", "")).resolve() != model.model_dir.resolve():
        print(f"nnunet-fracture vae-error: warning: the scale comes from a dataset made with the VAE "
              f"{recorded.get('model')}, not {model.model_dir}")
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for case in tqdm(cases, desc=f"VAE error maps of {images}", unit="case"):
            inputs = [images / f"{case}_{c:04d}{file_ending}" for c in range(channel)]
            for path in inputs:
                if not path.is_file():
                    raise FileNotFoundError(f"case {case}: {path} does not exist, but the model trained on the error "
                                            f"dataset reads {channel} channel(s) before the error channel. "
                                            f"Fix: add it.")
                shutil.copy2(path, tmp / path.name)
            error = model.error_map(inputs[: model.n_channels])
            reference = sitk.ReadImage(str(inputs[0]))
            write_image(array_to_image(np.clip(error / scale, 0.0, 1.0).astype(np.float32), reference),
                        tmp / f"{case}_{channel:04d}{file_ending}")
        percentile = None if recorded is None else recorded.get("percentile")
        provenance = vae_provenance(model, channel, float(scale), percentile, None)
        provenance.update(images=str(images.absolute()), scale_source=str(scale_from) if scale_from else "--scale",
                          cases=cases)
        (tmp / "vae_error.json").write_text(json.dumps(provenance, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return provenance
