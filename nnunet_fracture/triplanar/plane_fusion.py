"""``nnunet-fracture fuse``: tri-planar fusion of 2D models' fracture probabilities, and class-head fusion.

**Inputs.** Up to three ``nnUNetv2_predict --save_probabilities`` output folders: ``axial`` (predicted on the
source dataset) and ``coronal`` / ``sagittal`` (predicted on copies written by ``nnunet-fracture reorient``). Each
``<case>.npz`` holds the probabilities without geometry; the segmentation ``<case>.nii.gz`` nnU-Net writes next to
it carries the grid they lie on. Every case is mapped onto the **target grid** - the source dataset's
``imagesTr/<case>_0000`` when a dataset is given, else the axial folder's segmentation - with
:func:`~nnunet_fracture.triplanar.grid_mapping.map_to_grid`: an exact index permutation for reoriented copies (no
interpolation; the round trip is bit-exact), interpolation only when explicitly allowed.

**Fusion**, voxel by voxel, with P_p the fracture probability of plane p (those given):

- ``product``: ``P = P_ax * P_co * P_sa``. A voxel stays high only where every model agrees, which suppresses the
  false positives each single plane makes. The product of three calibrated probabilities is not calibrated (three
  0.8s give 0.512): compare operating points with ``nnunet-fracture evaluate``'s best threshold, not at 0.5 only.
- ``mean``: ``P = (P_ax + P_co + P_sa) / 3``, the baseline.

**Class-head fusion.** With class probabilities (a folder of per-case NIfTI maps ``<case>.nii.gz`` on a grid that
maps onto the target, or a CSV ``case,probability`` with one scalar per case) the result is
``P_class * P`` voxel by voxel, applied after the plane fusion (with one plane folder it is ``P_class * P_seg``).

**Outputs** (``out``, built in a hidden ``.<out>.partial-*`` folder and renamed into place when complete)::

    <case>.npz      probabilities: float32 array (1, z, y, x), the fused fracture probability, like nnU-Net's
                    (read by ``nnunet-fracture evaluate``, ``pseudo-masks`` and ``visualize``)
    <case>.nii.gz   uint8 segmentation, 1 where P >= threshold (default 0.5), on the target grid
    fusion.json     provenance: inputs, model info, each model's 2D slicing plane, method, mapping, per-case numbers

One case is in memory at a time: the accumulator and one plane's probabilities (about 8 bytes per voxel).
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.triplanar.class_head_fusion import ClassProbability, class_head_fusion
from nnunet_fracture.inference.prediction_folders import (PredictionFolder, model_info, open_prediction_folders,
                                                          read_grid)
from nnunet_fracture.io.probability_files import load_fracture_probability
from nnunet_fracture.io.output_folders import check_output_folder, check_output_not_an_input, replace_folder
from nnunet_fracture.triplanar.grid_mapping import INTERPOLATORS, GridMappingError, map_to_grid
from nnunet_fracture.io.reference_grid import array_to_image
from nnunet_fracture.io.verified_writes import save_npz, write_image

PLANES = ("axial", "coronal", "sagittal")
METHODS = {
    "product": "P = product of the planes' fracture probabilities (tri-planar: P_ax * P_co * P_sa)",
    "mean": "P = mean of the planes' fracture probabilities (baseline)",
}
#: Physical LPS axis (0 = x, 1 = y, 2 = z) normal to slices of each plane.
_NORMAL_PLANE = {0: "sagittal", 1: "coronal", 2: "axial"}
OUTPUT_FILE_ENDING = ".nii.gz"


def fuse_arrays(arrays: Iterable[np.ndarray], method: str = "product") -> np.ndarray:
    """Fuse equally shaped probability arrays, streamed one at a time, into a float32 array.

    Raises:
        ValueError: unknown method, no array, or differing shapes.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; expected one of {', '.join(METHODS)}")
    fused: Optional[np.ndarray] = None
    count = 0
    for array in arrays:
        x = np.asarray(array, dtype=np.float32)
        count += 1
        if fused is None:
            fused = x.copy()
            continue
        if x.shape != fused.shape:
            raise ValueError(f"probability array {count} has shape {x.shape}, the first had {fused.shape}")
        if method == "product":
            fused *= x
        else:
            fused += x
    if fused is None:
        raise ValueError("no probability arrays to fuse")
    if method == "mean" and count > 1:
        fused /= np.float32(count)
    return fused


def _plane_of_axis(grid: sitk.Image, itk_axis: int) -> str:
    direction = np.asarray(grid.GetDirection(), dtype=np.float64).reshape(3, 3)
    return _NORMAL_PLANE[int(np.argmax(np.abs(direction[:, itk_axis])))]


def slicing_plane(folder: PredictionFolder, case: str) -> Optional[dict]:
    """Which plane a 2d model of this folder was trained on, from the ``plans.json`` nnU-Net copies into it.

    nnU-Net's 2d configuration slices along the first array axis after ``transpose_forward``; array axis ``a`` is
    ITK axis ``2 - a`` of the case's grid, whose direction column names the plane. ``None`` without plans.json.
    """
    plans_file = folder.path / "plans.json"
    if not plans_file.is_file():
        return None
    try:
        transpose = [int(a) for a in json.loads(plans_file.read_text())["transpose_forward"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if sorted(transpose) != [0, 1, 2]:
        return None
    grid = read_grid(folder.segmentation_file(case), "segmentation", "keep nnU-Net's segmentation files next to "
                     "the .npz files")
    return {"transpose_forward": transpose, "sliced_array_axis": transpose[0],
            "plane": _plane_of_axis(grid, 2 - transpose[0]), "checked_on_case": case}


def _check_cases(folders: dict[str, PredictionFolder]) -> list[str]:
    predicted = sorted(set().union(*(f.cases for f in folders.values())))
    if not predicted:
        raise ValueError("the prediction folders hold no case. Fix: pass nnUNetv2_predict output folders made with "
                         "--save_probabilities.")
    for plane, folder in folders.items():
        for kind, present, fix in (
                ("probabilities (.npz)", folder.probability_cases, "predict with --save_probabilities"),
                (f"segmentation ({folder.file_ending})", folder.segmentation_cases,
                 "keep nnU-Net's segmentation files next to the .npz files: they carry the grid")):
            missing = sorted(set(predicted) - present)
            if missing:
                raise FileNotFoundError(
                    f"--{plane} folder {folder.path} has no {kind} for {len(missing)} case(s) that another folder "
                    f"holds: {', '.join(missing[:10])}. Fix: predict the same cases with every model and {fix}.")
    return predicted


class _TargetGrids:
    """The grid every case is fused on: the source dataset's images, or the axial folder's segmentations."""

    def __init__(self, dataset: Optional[str | int | Path], axial: Optional[PredictionFolder], cases: list[str]):
        self.dataset_folder: Optional[Path] = None
        self.axial = axial
        self.reoriented_from: Optional[str] = None
        if dataset is not None:
            from nnunet_fracture.dataset_conversion.source_dataset import resolve_dataset_folder

            self.dataset_folder = resolve_dataset_folder(dataset).absolute()
            meta_file = self.dataset_folder / "dataset.json"
            meta = {}
            if meta_file.is_file():
                try:
                    meta = json.loads(meta_file.read_text())
                except json.JSONDecodeError as e:
                    raise ValueError(f"{meta_file} is not valid JSON ({e})") from None
            self.file_ending = meta.get("file_ending", ".nii.gz")
            reorientation = (meta.get("nnunet_fracture") or {}).get("reorientation") or {}
            self.reoriented_from = reorientation.get("reoriented_from")
            missing = [c for c in cases if not self.image_file(c).is_file()]
            if missing:
                raise FileNotFoundError(
                    f"the dataset {self.dataset_folder} has no image imagesTr/<case>_0000{self.file_ending} for "
                    f"{len(missing)} predicted case(s): {', '.join(missing[:10])}, e.g. {self.image_file(missing[0])}. "
                    f"Fix: pass the --dataset the axial predictions were made from.")
        elif axial is None:
            raise ValueError("no grid to fuse on: without --axial the original grid is unknown. Fix: pass --dataset "
                             "with the source dataset (the one the coronal and sagittal copies were reoriented from).")

    def image_file(self, case: str) -> Path:
        assert self.dataset_folder is not None
        return self.dataset_folder / "imagesTr" / f"{case}_0000{self.file_ending}"

    @property
    def description(self) -> str:
        if self.dataset_folder is not None:
            return f"images of {self.dataset_folder} (imagesTr/<case>_0000{self.file_ending})"
        assert self.axial is not None
        return f"segmentations of the axial folder {self.axial.path}"

    def grid(self, case: str) -> tuple[sitk.Image, Path]:
        if self.dataset_folder is not None:
            path = self.image_file(case)
            return read_grid(path, f"case {case}: image", "pass the --dataset the predictions belong to"), path
        assert self.axial is not None
        path = self.axial.segmentation_file(case)
        return read_grid(path, f"case {case}: segmentation", "keep nnU-Net's segmentation files"), path


def _plane_probability(plane: str, folder: PredictionFolder, case: str, grid: sitk.Image, grid_file: Path,
                       resample: Optional[str]) -> tuple[np.ndarray, str]:
    seg_file = folder.segmentation_file(case)
    seg_grid = read_grid(seg_file, f"case {case}: segmentation", "keep nnU-Net's segmentation files next to the "
                         ".npz files")
    shape = tuple(int(s) for s in seg_grid.GetSize())[::-1]
    probability = load_fracture_probability(folder.probability_file(case), case, shape)
    try:
        return map_to_grid(probability, seg_grid, grid, resample, copy=False)  # a view: fused in place
    except GridMappingError as e:
        alternative = "" if resample else ", or pass --resample to interpolate"
        raise ValueError(
            f"case {case}: the --{plane} prediction {seg_file} cannot be mapped onto the target grid {grid_file}: "
            f"{e}. Fix: predict the {plane} model on the dataset written by `nnunet-fracture reorient` from the "
            f"source dataset (its geometry maps back exactly){alternative}.") from None


def _slicing_warnings(folders: dict[str, PredictionFolder], case: str) -> tuple[dict, list[str]]:
    planes, warnings = {}, []
    for plane, folder in folders.items():
        found = slicing_plane(folder, case)
        planes[plane] = found
        if found is not None and found["plane"] != plane:
            warnings.append(
                f"--{plane} {folder.path}: if these are a 2d model's predictions, it was trained on {found['plane']} "
                f"slices, not {plane} ones: its plans.json has transpose_forward {found['transpose_forward']}, so "
                f"nnU-Net's 2d configuration slices array axis {found['sliced_array_axis']}, the {found['plane']} "
                f"normal on this grid. Fix: plan the reoriented dataset with the command in its dataset.json "
                f"(nnunet_fracture.reorientation.nnunet_2d_planning) and retrain; ignore this for 3d models.")
    return planes, warnings


def _fused_case(folders: dict[str, PredictionFolder], case: str, grid: sitk.Image, grid_file: Path, method: str,
                resample: Optional[str], mappings: dict[str, dict[str, int]]) -> np.ndarray:
    def stream():
        for plane, folder in folders.items():
            mapped, how = _plane_probability(plane, folder, case, grid, grid_file, resample)
            mappings[plane][how] = mappings[plane].get(how, 0) + 1
            yield mapped
            del mapped

    return fuse_arrays(stream(), method)


def fuse_predictions(out: Path | str, axial: Optional[Path | str] = None, coronal: Optional[Path | str] = None,
                     sagittal: Optional[Path | str] = None, method: str = "product",
                     dataset: Optional[str | int | Path] = None, class_probability: Optional[Path | str] = None,
                     threshold: float = 0.5, resample: Optional[str] = None, overwrite: bool = False) -> dict:
    """Fuse the planes' probabilities (and class probabilities) of every case and write ``out`` (module doc).

    Args:
        out: output folder; must not exist or be empty unless ``overwrite``.
        axial, coronal, sagittal: nnUNetv2_predict output folders (``--save_probabilities``); at least one, and
            two or more unless ``class_probability`` is given.
        method: ``"product"`` or ``"mean"``.
        dataset: the source raw dataset (ID, ``DatasetXXX_NAME`` or folder) whose ``imagesTr`` grids the result
            gets; default: the axial folder's segmentations.
        class_probability: folder of per-case maps ``<case>.nii.gz`` or CSV ``case,probability``.
        threshold: the written segmentation is ``P >= threshold``, in (0, 1].
        resample: ``None`` (exact index mappings only), ``"linear"`` or ``"nearest"`` interpolation otherwise.
        overwrite: replace a non-empty ``out``.

    Returns:
        The provenance written to ``fusion.json`` (with ``warnings`` about models' slicing planes).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: bad input, naming the file, case and fix; nothing is
            written then.
    """
    from nnunet_fracture import __version__

    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; expected one of {', '.join(METHODS)}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    if resample is not None and resample not in INTERPOLATORS:
        raise ValueError(f"unknown interpolation {resample!r}; expected one of {', '.join(INTERPOLATORS)}")
    given = {plane: path for plane, path in zip(PLANES, (axial, coronal, sagittal)) if path is not None}
    if not given:
        raise ValueError("no prediction folder given. Fix: pass --axial, --coronal and/or --sagittal.")
    if len(given) == 1 and class_probability is None:
        raise ValueError(f"nothing to fuse: only --{next(iter(given))} was given. Fix: pass two or three planes, or "
                         f"--class-probability for class-head fusion.")
    out = Path(out).absolute()
    check_output_folder(out, overwrite)
    folders = dict(zip(given, open_prediction_folders(list(given.values()), OUTPUT_FILE_ENDING)))
    cases = _check_cases(folders)
    targets = _TargetGrids(dataset, folders.get("axial"), cases)
    classes = ClassProbability(class_probability, cases) if class_probability is not None else None
    inputs = [f.path for f in folders.values()] + ([targets.dataset_folder] if targets.dataset_folder else [])
    check_output_not_an_input(out, inputs + ([classes.source] if classes is not None else []))
    planes, warnings = _slicing_warnings(folders, cases[0])
    if targets.reoriented_from is not None:
        warnings.append(f"--dataset {targets.dataset_folder} is a reoriented copy of {targets.reoriented_from}; the "
                        f"fused result lies on the copy's grid. Fix: pass the source dataset to fuse on the original "
                        f"grid.")

    mappings: dict[str, dict[str, int]] = {plane: {} for plane in list(folders) + ["class_probability"]}
    rows = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for case in tqdm(cases, desc="fuse", unit="case"):
            grid, grid_file = targets.grid(case)
            fused = _fused_case(folders, case, grid, grid_file, method, resample, mappings)
            if classes is not None:
                p_class, how = classes.load(case, grid, resample)
                mappings["class_probability"][how] = mappings["class_probability"].get(how, 0) + 1
                fused = class_head_fusion(fused, p_class)
                del p_class
            np.clip(fused, 0.0, 1.0, out=fused)
            mask = (fused >= np.float32(threshold)).astype(np.uint8)
            save_npz(tmp / f"{case}.npz", probabilities=fused[None])
            write_image(array_to_image(mask, grid), tmp / f"{case}{OUTPUT_FILE_ENDING}")
            rows.append({"case": case, "max_probability": float(fused.max()) if fused.size else 0.0,
                         "voxels_at_threshold": int(mask.sum())})
            del fused, mask
        provenance = {
            "plugin_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "method": method,
            "formula": METHODS[method] + (" x P_class" if classes is not None else ""),
            "planes": {plane: {"folder": str(folder.path), "model": model_info(folder),
                               "model_2d_slicing": planes[plane], "mapping_to_target": mappings[plane]}
                       for plane, folder in folders.items()},
            "class_probability": None if classes is None else {
                "source": str(classes.source), "kind": classes.kind,
                "mapping_to_target": mappings["class_probability"], "fusion": "P = P_class x P (voxel by voxel)"},
            "target_grid": targets.description,
            "resample": resample,
            "threshold": threshold,
            "segmentation_rule": "1 where P >= threshold",
            "num_cases": len(cases),
            "cases": rows,
            "warnings": warnings,
            "outputs": {"probabilities": "<case>.npz: 'probabilities' float32 (1, z, y, x), the fused fracture "
                                         "probability",
                        "segmentation": f"<case>{OUTPUT_FILE_ENDING}: uint8, 1 where P >= threshold, target grid"},
        }
        (tmp / "fusion.json").write_text(json.dumps(provenance, indent=2))
        check_output_folder(out, overwrite)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return provenance
