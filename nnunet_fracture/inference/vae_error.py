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
complete (:func:`nnunet_fracture.dataset_conversion.raw_dataset.staged_dataset`).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch
from tqdm import tqdm

from nnunet_fracture.inference.image_grid import to_image_grid
from nnunet_fracture.networks.unwrap import unwrap_network
from nnunet_fracture.training.error_channel import ERROR_CHANNEL_NAME, find_error_channel

#: voxels of normal tissue sampled per training case for the percentile
SAMPLES_PER_CASE = 200_000
DEFAULT_PERCENTILE = 99.0
ERROR_DEFINITION = ("mean over the VAE's input channels of |x - x_hat| (x: the CT after nnU-Net's normalisation "
                    "of the VAE's plans; x_hat: its reconstruction from the posterior mean), sliding windows with "
                    "gaussian blending, resampled to the CT's grid")


def error_predictor(network: torch.nn.Module, plans_manager, configuration_manager, dataset_json: dict,
                    trainer_name: str, device: torch.device, mirror: bool = False, step: float = 0.5,
                    parameters: Optional[list] = None):
    """An ``nnUNetPredictor`` around a VAE network (gaussian blending; mirroring only with ``mirror``)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=step, use_gaussian=True, use_mirroring=mirror,
                                perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    dims = len(configuration_manager.patch_size)
    predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                    trainer_name, tuple(range(dims)) if mirror else None)
    return predictor


def inside_outside_summary(cases: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Mean error inside and outside the labelled (box / fracture) voxels, per case and pooled.

    Args:
        cases: ``{case: (error, inside)}`` with ``inside`` a boolean array of the error's shape.
    """
    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return None if a is None or b is None or b == 0 else round(a / b, 4)

    per_case, sums = {}, np.zeros(4)
    for case, (error, inside) in cases.items():
        error = np.asarray(error, dtype=np.float64)
        inside = np.asarray(inside, dtype=bool)
        if error.shape != inside.shape:
            raise ValueError(f"case {case}: error map shape {error.shape} differs from label shape {inside.shape}")
        s_in, n_in = float(error[inside].sum()), int(inside.sum())
        s_out, n_out = float(error[~inside].sum()), int((~inside).sum())
        sums += (s_in, n_in, s_out, n_out)
        m_in = round(s_in / n_in, 6) if n_in else None
        m_out = round(s_out / n_out, 6) if n_out else None
        per_case[case] = {"mean_inside": m_in, "mean_outside": m_out, "ratio_inside_outside": ratio(m_in, m_out),
                          "voxels_inside": n_in}
    m_in = round(sums[0] / sums[1], 6) if sums[1] else None
    m_out = round(sums[2] / sums[3], 6) if sums[3] else None
    return {"pooled": {"mean_inside": m_in, "mean_outside": m_out, "ratio_inside_outside": ratio(m_in, m_out)},
            "cases": per_case}


class ErrorMapModel:
    """A trained VAE model folder, ready to compute error maps of raw images in their own geometry.

    Args:
        model_dir: ``$nnUNet_results/DatasetXXX_NAME/nnUNetTrainerNormalVAE__PLANS__CONFIGURATION``.
        folds: folds to average (default: every ``fold_X`` holding ``checkpoint``, else ``fold_all``).
        checkpoint: checkpoint file name in each fold folder.
        device: default CUDA when available, else CPU.
        mirror: also average mirrored passes (nnU-Net's test-time mirroring; 8x slower in 3D).

    Raises:
        FileNotFoundError: the folder, its plans.json/dataset.json or a fold's checkpoint is missing.
        ValueError: the model is not a VAE.
        RuntimeError: ``nnUNet_extTrainer`` does not list the plugin's trainers.
    """

    def __init__(self, model_dir: Path | str, folds: Optional[Sequence[int | str]] = None,
                 checkpoint: str = "checkpoint_final.pth", device: Optional[torch.device] = None,
                 mirror: bool = False) -> None:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        from nnunet_fracture.environment import ext_trainer_problem
        from nnunet_fracture.networks.vae import ConvVAE

        model_dir = Path(model_dir).absolute()
        for needed in (model_dir, model_dir / "plans.json", model_dir / "dataset.json"):
            if not needed.exists():
                raise FileNotFoundError(f"{needed} does not exist. Fix: --vae must be the model folder written by "
                                        f"`nnUNetv2_train ... -tr nnUNetTrainerNormalVAE`, e.g. $nnUNet_results/"
                                        f"Dataset501_X/nnUNetTrainerNormalVAE__nnUNetPlans__3d_fullres")
        if folds is None:
            folds = nnUNetPredictor.auto_detect_available_folds(str(model_dir), checkpoint)
            if not folds and (model_dir / "fold_all" / checkpoint).is_file():  # nnU-Net's detection skips fold_all
                folds = ["all"]
            if not folds:
                raise FileNotFoundError(f"no fold_X/{checkpoint} in {model_dir}. Fix: finish training (or pass "
                                        f"--checkpoint checkpoint_best.pth / checkpoint_latest.pth).")
        folds = [f if f == "all" else int(f) for f in folds]
        for fold in folds:
            path = model_dir / f"fold_{fold}" / checkpoint
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist. Fix: train fold {fold} first, or choose other "
                                        f"--folds / --checkpoint.")
        problem = ext_trainer_problem()
        if problem:
            raise RuntimeError(problem)
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                                    perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(model_dir), folds, checkpoint)
        network = unwrap_network(predictor.network)
        if not isinstance(network, ConvVAE):
            raise ValueError(f"{model_dir} holds a {predictor.trainer_name} model ({type(network).__name__}), not a "
                             f"VAE. Fix: pass the folder of a model trained with -tr nnUNetTrainerNormalVAE.")
        self.model_dir, self.folds, self.checkpoint, self.mirror = model_dir, folds, checkpoint, mirror
        self.predictor = predictor
        self.channel_names = {int(k): v for k, v in predictor.dataset_json["channel_names"].items()}

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def describe(self) -> dict:
        return {"model": str(self.model_dir), "trainer": self.predictor.trainer_name, "folds": list(self.folds),
                "checkpoint": self.checkpoint, "mirror": self.mirror}

    def error_map(self, image_files: Sequence[Path | str]) -> np.ndarray:
        """The raw (unnormalised) error map of one case, a float32 array on the grid of ``image_files[0]``
        (SimpleITK array order z, y, x). ``image_files`` are the case's channels in the VAE's channel order."""
        p = self.predictor
        preprocessor = p.configuration_manager.preprocessor_class(verbose=False)
        data, _, properties = preprocessor.run_case([str(f) for f in image_files], None, p.plans_manager,
                                                    p.configuration_manager, p.dataset_json)
        error = p.predict_logits_from_preprocessed_data(torch.from_numpy(data))[:1].float()
        del data
        return to_image_grid(error, properties, p.plans_manager, p.configuration_manager)


def _write_like(array: np.ndarray, reference: sitk.Image, path: Path) -> None:
    if array.shape != sitk.GetArrayViewFromImage(reference).shape:
        raise ValueError(f"{path.name}: the error map has shape {array.shape} but the CT has "
                         f"{sitk.GetArrayViewFromImage(reference).shape} (z, y, x); this is a bug, please report it")
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path), True)


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


def normal_tissue_scale(samples: Iterable[np.ndarray], percentile: float) -> float:
    """The ``percentile``-th percentile of the pooled samples.

    Raises:
        ValueError: no sample, or a scale that is not positive (a VAE that reconstructs normal tissue perfectly).
    """
    pooled = np.concatenate([np.asarray(s, dtype=np.float32).ravel() for s in samples] or [np.zeros(0)])
    if pooled.size == 0:
        raise ValueError("no normal-tissue voxel to take the percentile from: every training voxel lies in a box. "
                         "Fix: pass --scale or add fracture-free cases.")
    scale = float(np.percentile(pooled, percentile))
    if not scale > 0:
        raise ValueError(f"the {percentile}th percentile of the error over normal tissue is {scale}; the error "
                         f"channel would be meaningless. Fix: choose a higher --percentile or check the VAE.")
    return scale


def _check_percentile(percentile: float) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise ValueError(f"--percentile must be a number in (0, 100], got {percentile!r}")
    return float(percentile)


def write_error_dataset(dataset: str | int | Path, out_dataset_id: int, vae: Path | str, name: Optional[str] = None,
                        folds: Optional[Sequence[int | str]] = None, checkpoint: str = "checkpoint_final.pth",
                        percentile: float = DEFAULT_PERCENTILE, overwrite: bool = False,
                        device: Optional[torch.device] = None, mirror: bool = False,
                        raw_root: Optional[Path | str] = None, seed: int = 0) -> Path:
    """Write ``raw_root/DatasetXXX_NAME``: ``dataset`` plus the normalised error channel (module docstring).

    Args:
        dataset: the source raw dataset (ID, ``DatasetXXX_NAME`` or folder), e.g. written by ``convert``.
        out_dataset_id: nnU-Net ID of the new dataset.
        vae: the VAE's model folder (see :class:`ErrorMapModel`).
        name: name of the new dataset (default ``<source name>VAE``).
        folds, checkpoint, device, mirror: see :class:`ErrorMapModel`.
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
    from nnunet_fracture.dataset_conversion.raw_dataset import check_dataset_id_free, staged_dataset
    from nnunet_fracture.inference.source_dataset import _DATASET_FOLDER, resolve_dataset_folder

    percentile = _check_percentile(percentile)
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
    if name is None:
        match = _DATASET_FOLDER.match(source.name)
        name = (source.name[match.end():] if match else source.name) + "VAE"
    if not CASE_ID_PATTERN.match(name):
        raise ValueError(f"dataset name {name!r} is not allowed: use letters, digits, '_' and '-' only. Fix: --name.")
    if _DATASET_FOLDER.match(source.name) and int(_DATASET_FOLDER.match(source.name).group(1)) == out_dataset_id \
            and source.parent.resolve() == raw_root.resolve():
        raise ValueError(f"--out-dataset {out_dataset_id} is the source dataset's own ID. Fix: choose a free ID.")
    check_dataset_id_free(raw_root, out_dataset_id, overwrite, flag="--overwrite")
    model = ErrorMapModel(vae, folds, checkpoint, device, mirror)
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
                _write_like(normalised, reference, tmp / split / f"{case}_{channel:04d}{file_ending}")
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


def vae_provenance(model: ErrorMapModel, channel: int, scale: float, percentile: Optional[float],
                   source: Optional[Path]) -> dict:
    from nnunet_fracture import __version__

    return {"channel": channel, "channel_name": ERROR_CHANNEL_NAME, "scale": scale, "percentile": percentile,
            "normalisation": "E = clip(error / scale, 0, 1)",
            "scale_from": "normal tissue: voxels with labelsTr == 0 of the training cases",
            "error": ERROR_DEFINITION, **model.describe(), "source_dataset": None if source is None else str(source),
            "plugin_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def scale_from_dataset(dataset: str | int | Path) -> tuple[float, int, dict]:
    """``(scale, channel, provenance)`` recorded by :func:`write_error_dataset` in a dataset's ``dataset.json``.

    Raises:
        FileNotFoundError, ValueError: no such dataset, or no ``nnunet_fracture.vae_error`` entry.
    """
    from nnunet_fracture.inference.source_dataset import resolve_dataset_folder

    folder = resolve_dataset_folder(dataset)
    meta = json.loads((folder / "dataset.json").read_text())
    entry = (meta.get("nnunet_fracture") or {}).get("vae_error")
    if not entry or "scale" not in entry:
        raise ValueError(f"{folder / 'dataset.json'} records no VAE error scale (nnunet_fracture.vae_error.scale). "
                         f"Fix: pass the dataset written by `nnunet-fracture vae-error --dataset ...`, or --scale.")
    return float(entry["scale"]), int(entry["channel"]), entry


def write_error_images(images: Path | str, out: Path | str, vae: Path | str, scale: Optional[float] = None,
                       scale_from: Optional[str | int | Path] = None, folds: Optional[Sequence[int | str]] = None,
                       checkpoint: str = "checkpoint_final.pth", file_ending: str = ".nii.gz",
                       overwrite: bool = False, device: Optional[torch.device] = None, mirror: bool = False) -> dict:
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
    model = ErrorMapModel(vae, folds, checkpoint, device, mirror)
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
            _write_like(np.clip(error / scale, 0.0, 1.0).astype(np.float32), reference,
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
