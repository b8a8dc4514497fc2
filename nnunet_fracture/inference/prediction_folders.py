"""Read ``nnUNetv2_predict --save_probabilities`` output folders and fuse them into one probability per case.

A prediction folder holds, per case, ``<case><file_ending>`` (the segmentation, which carries the image
geometry) and ``<case>.npz`` (the probabilities, read with
:func:`~nnunet_fracture.io.probability_files.load_fracture_probability`), plus the files nnU-Net copies
there: ``predict_from_raw_data_args.json``, ``plans.json`` and ``dataset.json``. Case ids are file stems.

**Several folders** are taken as one folder per fold (``nnUNetv2_predict -f 0 -o pred_f0``, ``-f 1 -o
pred_f1``, ...). The fused probability is the per-voxel mean over the folders and the uncertainty the per-voxel
standard deviation across them (population form, dividing by the number of folders): the spread of the
cross-fold ensemble that nnU-Net's maintainers recommend as an uncertainty estimate. It lies in [0, 0.5].
Folds are read one at a time and accumulated with Welford's update in float32, so memory does not grow with the
number of folds.

**One folder** (a single fold, or a multi-fold run where nnU-Net saved only the mean) has no spread, and the
uncertainty is the binary entropy of the probability in bits, ``H(p) = -p log2 p - (1 - p) log2 (1 - p)``, in
[0, 1] (1 at p = 0.5, 0 at p = 0 or 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import SimpleITK as sitk
from scipy.special import entr

from nnunet_fracture.image_geometry import geometry_mismatch
from nnunet_fracture.io.probability_files import load_fracture_probability
from nnunet_fracture.io.json_files import read_json_object

PREDICT_FIX = "restore the file nnUNetv2_predict wrote"

#: Files nnUNetv2_predict 2.8.1 writes into its output folder besides the per-case results.
MODEL_FILES = ("predict_from_raw_data_args.json", "plans.json", "dataset.json")

UNCERTAINTY_KINDS = {
    "fold_std": "per-voxel standard deviation of the fracture probability across the prediction folders (one "
                "per fold; population form, in [0, 0.5])",
    "binary_entropy_bits": "binary entropy of the fracture probability in bits, -p log2 p - (1-p) log2 (1-p), "
                           "in [0, 1] (one prediction folder, so no spread across folds)",
}


def read_grid(path: Path, what: str, fix: str) -> sitk.Image:
    """A blank uint8 image with the size, spacing, origin and direction of the 3D image file ``path``.

    Only the header is read, so this costs one byte per voxel whatever the file's pixel type.

    Raises:
        FileNotFoundError: ``path`` is missing (the message names ``what`` and ``fix``).
        ValueError: the image is not 3D.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist. Fix: {fix}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    if reader.GetDimension() != 3:
        raise ValueError(f"{what} {path} is {reader.GetDimension()}D; expected a 3D image")
    grid = sitk.Image([int(s) for s in reader.GetSize()], sitk.sitkUInt8)
    grid.SetSpacing(reader.GetSpacing())
    grid.SetOrigin(reader.GetOrigin())
    grid.SetDirection(reader.GetDirection())
    return grid


def _stem(name: str, ending: str) -> str | None:
    return name[: -len(ending)] if name.endswith(ending) and len(name) > len(ending) else None


@dataclass(frozen=True)
class PredictionFolder:
    """One ``nnUNetv2_predict`` output folder and the cases it holds."""

    path: Path
    file_ending: str
    probability_cases: frozenset[str]
    segmentation_cases: frozenset[str]

    @classmethod
    def open(cls, path: Path | str, default_file_ending: str) -> "PredictionFolder":
        """Scan ``path``; the segmentation file ending is taken from its ``dataset.json`` when present."""
        path = Path(path).absolute()
        if not path.is_dir():
            raise FileNotFoundError(f"prediction folder {path} does not exist. Fix: pass the -o folder of "
                                    f"nnUNetv2_predict (one per fold).")
        ending = default_file_ending
        meta = path / "dataset.json"
        if meta.is_file():
            ending = read_json_object(meta, PREDICT_FIX).get("file_ending", default_file_ending)
        names = [p.name for p in path.iterdir() if p.is_file()]
        probability = {s for s in (_stem(n, ".npz") for n in names) if s}
        segmentation = {s for s in (_stem(n, ending) for n in names) if s}
        if not probability:
            raise FileNotFoundError(f"prediction folder {path} holds no probability files (<case>.npz). Fix: run "
                                    f"nnUNetv2_predict with --save_probabilities.")
        return cls(path, ending, frozenset(probability), frozenset(segmentation))

    @property
    def cases(self) -> frozenset[str]:
        return self.probability_cases | self.segmentation_cases

    def probability_file(self, case: str) -> Path:
        return self.path / f"{case}.npz"

    def segmentation_file(self, case: str) -> Path:
        return self.path / f"{case}{self.file_ending}"


def open_prediction_folders(paths: Sequence[Path | str], default_file_ending: str) -> list[PredictionFolder]:
    """Open every folder; the same folder listed twice is an error (it would fake a zero spread)."""
    if not paths:
        raise ValueError("no prediction folder given. Fix: pass the nnUNetv2_predict output folder(s).")
    folders = [PredictionFolder.open(p, default_file_ending) for p in paths]
    seen: dict[Path, Path] = {}
    for folder in folders:
        key = folder.path.resolve()
        if key in seen:
            raise ValueError(f"prediction folder {folder.path} is listed twice (also as {seen[key]}). Fix: list "
                             f"each fold's folder once.")
        seen[key] = folder.path
    return folders


def select_cases(folders: Sequence[PredictionFolder], cases: Sequence[str], boxes_file: Path) -> list[str]:
    """The cases to process: every case the prediction folders hold (all of the dataset, or a subset such as
    a fold's validation cases). Each must be listed in ``boxes_file`` and have a segmentation and probabilities
    in every folder.

    Raises:
        FileNotFoundError: a case is missing from a folder (names folder and case).
        ValueError: a folder holds cases of another dataset, or no case at all.
    """
    listed = set(cases)
    predicted = set().union(*(folder.cases for folder in folders))
    extra = sorted(predicted - listed)
    if extra:
        holder = next(f for f in folders if f.cases & set(extra))
        raise ValueError(f"prediction folder {holder.path} holds {len(extra)} case(s) that {boxes_file} does not "
                         f"list: {', '.join(extra[:10])}. The predictions are probably from another dataset. "
                         f"Fix: pass the --dataset the images were taken from.")
    if not predicted:
        raise ValueError(f"the prediction folder(s) {', '.join(str(f.path) for f in folders)} hold no case. Fix: "
                         f"pass the nnUNetv2_predict output folder(s) (run with --save_probabilities).")
    for folder in folders:
        for kind, present, fix in (
                ("probabilities (.npz)", folder.probability_cases,
                 "predict with --save_probabilities"),
                (f"segmentation ({folder.file_ending})", folder.segmentation_cases,
                 "keep nnU-Net's segmentation files next to the .npz files")):
            missing = sorted(predicted - present)
            if missing:
                raise FileNotFoundError(
                    f"prediction folder {folder.path} has no {kind} for {len(missing)} case(s) that another "
                    f"folder (or its own other files) hold: {', '.join(missing[:10])}. Fix: predict the same "
                    f"cases into every fold's folder and {fix}.")
    return sorted(predicted)


def model_info(folder: PredictionFolder) -> dict:
    """What the files nnUNetv2_predict copies into its output folder say about the model.

    nnU-Net 2.8.1 writes ``predict_from_raw_data_args.json`` (the arguments of ``predict_from_files``: input,
    output, ``save_probabilities``, ...), ``plans.json`` (plans name, dataset name, every configuration) and the
    model's ``dataset.json`` (labels). It does not record the trainer, the configuration used or the folds, so
    those are reported as not recorded.
    """
    info: dict = {"folder": str(folder.path), "num_cases": len(folder.probability_cases),
                  "files_found": [name for name in MODEL_FILES if (folder.path / name).is_file()]}
    args_file = folder.path / "predict_from_raw_data_args.json"
    if args_file.is_file():
        args = read_json_object(args_file, PREDICT_FIX)
        source = args.get("list_of_lists_or_source_folder")
        info["input"] = source if isinstance(source, str) else (
            f"{len(source)} listed cases" if isinstance(source, list) else None)
        for key in ("save_probabilities", "folder_with_segs_from_prev_stage", "num_parts", "part_id"):
            if key in args:
                info[key] = args[key]
    plans_file = folder.path / "plans.json"
    if plans_file.is_file():
        plans = read_json_object(plans_file, PREDICT_FIX)
        info["plans_name"] = plans.get("plans_name")
        info["model_dataset_name"] = plans.get("dataset_name")
        info["configurations_in_plans"] = sorted(plans.get("configurations", {}))
    dataset_file = folder.path / "dataset.json"
    if dataset_file.is_file():
        model_dataset = read_json_object(dataset_file, PREDICT_FIX)
        info["model_labels"] = model_dataset.get("labels")
        info["model_weak_labels"] = (model_dataset.get("nnunet_fracture") or {}).get("weak")
    info["not_recorded"] = ("nnUNetv2_predict 2.8.1 does not write the trainer, configuration or folds into its "
                            "output folder")
    return info


def fold_mean_and_std(arrays: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-voxel mean and population standard deviation of a stream of equally shaped arrays.

    Welford's update, one array in memory at a time besides two float32 accumulators.

    Returns:
        ``(mean, std, count)``, both arrays float32.

    Raises:
        ValueError: the stream is empty or the shapes differ.
    """
    mean = m2 = None
    count = 0
    for array in arrays:
        x = np.asarray(array, dtype=np.float32)
        count += 1
        if mean is None:
            mean, m2 = x.copy(), np.zeros_like(x)
            continue
        if x.shape != mean.shape:
            raise ValueError(f"array {count} has shape {x.shape}, the first had {mean.shape}")
        delta = x - mean
        mean += delta / np.float32(count)
        delta *= x - mean
        m2 += delta
    if mean is None:
        raise ValueError("no arrays to average")
    np.maximum(m2, 0, out=m2)
    return mean, np.sqrt(m2 / np.float32(count)), count


def binary_entropy_bits(probability: np.ndarray) -> np.ndarray:
    """``-p log2 p - (1 - p) log2 (1 - p)`` per voxel as float32, with ``0 log 0 = 0``."""
    p = np.asarray(probability, dtype=np.float64)
    return ((entr(p) + entr(1.0 - p)) / math.log(2.0)).astype(np.float32)


def check_geometry(grid: sitk.Image, folder: PredictionFolder, case: str, image_file: Path) -> None:
    """The case's segmentation in ``folder`` must lie on the dataset image's grid."""
    seg_file = folder.segmentation_file(case)
    seg = read_grid(seg_file, "segmentation", "keep nnU-Net's segmentation files next to the .npz files")
    mismatch = geometry_mismatch(grid, seg)
    if mismatch is not None:
        name, theirs, ours = mismatch
        raise ValueError(f"case {case}: prediction {seg_file} has {name} {theirs} but the dataset image {image_file} "
                         f"has {ours}. Fix: pass the --dataset whose imagesTr the predictions were made from.")


def fused_probability(folders: Sequence[PredictionFolder], case: str, grid: sitk.Image,
                      image_file: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Fracture probability of ``case`` fused over ``folders`` and its uncertainty map (module docstring).

    Args:
        folders: the prediction folders (one per fold, or a single one).
        case: case id.
        grid: the dataset image's grid (see :func:`read_grid`); predictions must match it.
        image_file: the dataset image, quoted in error messages.

    Returns:
        ``(probability, uncertainty, kind)``: float32 arrays in SimpleITK order (k, j, i) and the uncertainty kind,
        a key of :data:`UNCERTAINTY_KINDS`.
    """
    shape = tuple(int(s) for s in grid.GetSize())[::-1]
    for folder in folders:
        check_geometry(grid, folder, case, image_file)
    stream = (load_fracture_probability(f.probability_file(case), case, shape) for f in folders)
    mean, std, count = fold_mean_and_std(stream)
    if count == 1:
        return mean, binary_entropy_bits(mean), "binary_entropy_bits"
    return mean, std, "fold_std"
