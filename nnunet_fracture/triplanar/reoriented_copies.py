"""Reoriented copies of a raw dataset, so that nnU-Net's ``2d`` configuration trains on coronal or sagittal slices.

**What nnU-Net slices.** nnU-Net's ``2d`` configuration cuts every case into slices along the *first array axis
after the plans' transpose*. SimpleITK arrays are ``[k, j, i]``, so without a transpose that is the slowest ITK
index axis ``k``. The planner (``ExperimentPlanner.determine_transpose`` in nnunetv2 2.8.1) sets
``transpose_forward = [argmax(target_spacing), the other two axes]``: it always puts the axis with the *largest
target spacing* first. For a typical thick-slice CT (0.8 x 0.8 x 2.5 mm) that is the axial slice axis, whatever
order the arrays are stored in. Permuting the arrays alone is therefore undone by nnU-Net's planning: a coronal
copy of such a CT, planned with the default command, still trains axial 2D slices (``transpose_forward`` becomes
``[1, 0, 2]``). Only for isotropic data (all spacings equal; ``argmax`` then returns axis 0) does the permutation
alone suffice.

**What works.** The planner takes ``-overwrite_target_spacing`` (in array order) as its target spacing, and
``determine_transpose`` uses that same target. Giving the first array axis a target spacing at least as large as
the others (``(max(m0, m1, m2), m1, m2)`` with ``m`` the dataset's median spacing; ``argmax`` picks the first of
equal values) yields ``transpose_forward = [0, 1, 2]``, and the ``2d`` configuration's spacing is then ``(m1, m2)``,
the native in-plane spacing of the coronal (or sagittal) slices; 2D preprocessing never resamples the slice axis.
The target spacing also applies to ``3d_fullres`` (it would resample the slice axis to the coarse spacing), so
plan these copies for ``-c 2d`` under their own plans name. :func:`planning_command` writes the exact command; it
is stored in ``dataset.json`` and printed by ``nnunet-fracture reorient``. The same holds for an *axial* 2D
model: on thin-slice CT (slices thinner than the pixels) nnU-Net's transpose puts an in-plane axis first and the
stock ``2d`` model of the original dataset is not axial; ``--plane axial`` gives a copy with the axial axis last in
ITK order and the planning command that keeps it.

**The permutation.** ``axis_order`` lists, for each new ITK index axis ``a`` (i, j, k), the source axis it comes
from: new index ``n`` and source index ``m`` address the same voxel when ``m[axis_order[a]] = n[a]``. The new ``k``
(nnU-Net's first array axis, the 2D slicing axis) is the source index axis most aligned with the plane's normal in
the physical LPS frame (x for sagittal, y for coronal, z for axial; on a tie the lower axis), decided per case from
the direction of ``imagesTr/<case>_0000``; the other two keep their order. For a standard axial CT (identity
direction) coronal is ``[0, 2, 1]`` (arrays ``[k, j, i] -> [j, k, i]``: slices of constant y, rows z, columns x)
and sagittal ``[1, 2, 0]`` (``-> [i, k, j]``: slices of constant x, rows z, columns y).

**Geometry is physical and exact.** Spacing and direction columns are permuted with the axes and the origin is
kept (voxel (0, 0, 0) is the same voxel), so every voxel keeps its physical position: ``sitk.Resample`` of a copy
onto the source grid with nearest-neighbour interpolation returns the source array bit for bit, and predictions
made on the copy map back exactly (:mod:`nnunet_fracture.triplanar.grid_mapping`). The permuted direction is in
general no rotation: swapping two columns makes its determinant -1 (a left-handed index frame). ITK, NIfTI
(``qfac = -1``) and nnU-Net (which reads arrays and spacing and only copies the direction back into its outputs)
handle that; viewers show the image in its true physical position.

**What is copied.** Every image file (``file_ending``) in every sub-folder - ``imagesTr`` (all channels),
``labelsTr``, ``groundTruthTr``, ``vertebraeTr``, ``imagesTs``, ... - is permuted with its case's axis order
(files of unknown cases, e.g. ``imagesTs``, with their own direction's order); other files are copied unchanged.
``boxes.json``: ``lo``/``hi`` are permuted the same way, world coordinates stay. ``dataset.json``: a copy with the
new name and a ``nnunet_fracture.reorientation`` provenance block. Labels keep their values: ``--weak slice``
labels still mark whole *axial* slices, which in a coronal copy are rows of each coronal slice. The copy is built
in a hidden folder next to the target and renamed into place when complete, with ``overwrite`` semantics as in
:mod:`~nnunet_fracture.dataset_conversion.raw_dataset`.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.dataset_conversion.case import CASE_ID_PATTERN
from nnunet_fracture.dataset_conversion.dataset_folders import dataset_folder_name, staged_dataset
from nnunet_fracture.io.json_files import read_json_object
from nnunet_fracture.io.verified_writes import write_image

#: Physical LPS axis normal to each slicing plane (0 = x, right to left; 1 = y, anterior to posterior; 2 = z).
PLANE_NORMAL = {"sagittal": 0, "coronal": 1, "axial": 2}
PLANES = tuple(PLANE_NORMAL)
METADATA_FILES = ("dataset.json", "boxes.json")


def slicing_axis_order(direction: Sequence[float], plane: str) -> tuple[int, int, int]:
    """``axis_order`` that makes the new ``k`` the index axis most aligned with ``plane``'s normal (module doc).

    Args:
        direction: the 3x3 direction matrix, row-major as SimpleITK returns it (columns = index axes).
        plane: ``"axial"``, ``"coronal"`` or ``"sagittal"``.

    Raises:
        ValueError: unknown plane or a direction that is not 3x3.
    """
    if plane not in PLANE_NORMAL:
        raise ValueError(f"unknown plane {plane!r}; expected one of {', '.join(PLANES)}")
    matrix = np.asarray(direction, dtype=np.float64)
    if matrix.size != 9:
        raise ValueError(f"expected a 3x3 direction matrix (3D image), got {matrix.size} values")
    matrix = matrix.reshape(3, 3)
    slicing = int(np.argmax(np.abs(matrix[PLANE_NORMAL[plane], :])))
    others = [a for a in range(3) if a != slicing]
    return others[0], others[1], slicing


def _check_order(axis_order: Sequence[int]) -> tuple[int, int, int]:
    order = tuple(int(a) for a in axis_order)
    if sorted(order) != [0, 1, 2]:
        raise ValueError(f"axis_order must be a permutation of (0, 1, 2), got {tuple(axis_order)}")
    return order  # type: ignore[return-value]


def array_axes(axis_order: Sequence[int]) -> tuple[int, int, int]:
    """``np.transpose`` axes turning a source ``[k, j, i]`` array into the reoriented ``[k, j, i]`` array.

    New array axis ``b`` is new ITK axis ``2 - b``, which is source ITK axis ``axis_order[2 - b]``, which is source
    array axis ``2 - axis_order[2 - b]``.
    """
    order = _check_order(axis_order)
    return tuple(2 - order[2 - b] for b in range(3))  # type: ignore[return-value]


def inverse_axis_order(axis_order: Sequence[int]) -> tuple[int, int, int]:
    """The axis order that undoes ``axis_order``."""
    order = _check_order(axis_order)
    inverse = [0, 0, 0]
    for new, old in enumerate(order):
        inverse[old] = new
    return tuple(inverse)  # type: ignore[return-value]


def reorient_image(image: sitk.Image, axis_order: Sequence[int]) -> sitk.Image:
    """Permute ``image``'s index axes by ``axis_order``; every voxel keeps its physical position.

    Pixel type, vector components and the voxel values are kept; spacing and direction columns are permuted and
    the origin is unchanged.
    """
    order = _check_order(axis_order)
    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
    array = sitk.GetArrayViewFromImage(image)
    vector = image.GetNumberOfComponentsPerPixel() > 1
    axes = array_axes(order) + ((3,) if vector else ())
    out = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, axes)), isVector=vector)
    spacing, direction = image.GetSpacing(), np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    out.SetSpacing([spacing[a] for a in order])
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(direction[:, list(order)].ravel().tolist())
    return out


def reorient_box_entry(entry: dict, axis_order: Sequence[int]) -> dict:
    """A ``boxes.json`` entry with ``lo``/``hi`` permuted; world coordinates and other keys unchanged."""
    order = _check_order(axis_order)
    out = dict(entry)
    for key in ("lo", "hi"):
        if key in entry:
            out[key] = [entry[key][a] for a in order]
    return out


def planning_target_spacing(array_spacings: Sequence[Sequence[float]]) -> list[float]:
    """``-overwrite_target_spacing`` (array order) that makes nnU-Net slice along the first array axis.

    ``(max(m0, m1, m2), m1, m2)`` with ``m`` the per-axis median of the cases' array-order spacings (nnU-Net's own
    default target); see the module docstring.
    """
    median = np.median(np.asarray(array_spacings, dtype=np.float64).reshape(-1, 3), axis=0)
    m = [float(f"{v:.6g}") for v in median]  # the printed value is what nnU-Net parses
    return [max(m), m[1], m[2]]


def plans_name_for(plane: str) -> str:
    return f"nnUNetPlans_{plane}"


def planning_command(dataset_id: int, target_spacing: Sequence[float], plane: str) -> str:
    """The stock command that plans and preprocesses a reoriented copy for 2D slices along its first array axis."""
    spacing = " ".join(f"{v:g}" for v in target_spacing)
    return (f"nnUNetv2_plan_and_preprocess -d {dataset_id} -c 2d --verify_dataset_integrity "
            f"-overwrite_target_spacing {spacing} -overwrite_plans_name {plans_name_for(plane)}")


def _image_files(folder: Path, ending: str) -> list[Path]:
    return sorted(p for p in folder.rglob(f"*{ending}") if p.is_file() and len(p.name) > len(ending))


def _case_of(path: Path, top: str, ending: str) -> str:
    stem = path.name[: -len(ending)]
    if top.startswith("images") and len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit():
        return stem[:-5]
    return stem


def _header_direction(path: Path) -> tuple[float, ...]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    if reader.GetDimension() != 3:
        raise ValueError(f"{path} is {reader.GetDimension()}D; only 3D datasets can be reoriented")
    return reader.GetDirection()


def _check_target(dataset_id: object, name: object, source_folder: Path) -> None:
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, np.integer)) or not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be an integer from 1 to 999 (nnU-Net's DatasetXXX numbering), got "
                         f"{dataset_id!r}. Fix: pick a free number, e.g. --dataset-id 602.")
    if not isinstance(name, str) or not CASE_ID_PATTERN.match(name):
        raise ValueError(f"dataset name {name!r} is not allowed: use letters, digits, '_' and '-' only. Fix: e.g. "
                         f"--name SpineCoronal.")
    if source_folder.name.startswith(f"Dataset{int(dataset_id):03d}_"):
        raise ValueError(f"--dataset-id {dataset_id} is the source dataset's own ID ({source_folder}); the copy "
                         f"would replace its source. Fix: choose a free ID.")


def _default_name(source_folder: Path, plane: str) -> str:
    name = source_folder.name
    if name.startswith("Dataset") and name[7:10].isdigit() and name[10:11] == "_":
        name = name[11:]
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in name) or "Dataset"
    return f"{name}_{plane}"


def refuse_links_out(root: Path, paths: Sequence[Path]) -> None:
    """Raise ``ValueError`` naming the first of ``paths`` that resolves outside ``root`` (a symbolic link out of the
    dataset: its target would be copied into the new dataset)."""
    inside = root.resolve()
    for path in paths:
        if not path.resolve().is_relative_to(inside):
            raise ValueError(f"{path} is a link to {path.resolve()}, outside the source dataset {root}; reorient "
                             f"copies only the dataset's own files. Fix: replace the link with the file itself.")


def write_reoriented_dataset(source: str | int | Path, plane: str, dataset_id: int, name: Optional[str] = None,
                             overwrite: bool = False, raw_root: Optional[Path | str] = None) -> Path:
    """Write ``raw_root/DatasetXXX_NAME``: ``source`` with its arrays permuted for 2D slices along ``plane``.

    Args:
        source: the raw dataset: ID or ``DatasetXXX_NAME`` in ``$nnUNet_raw``, or its folder.
        plane: ``"coronal"``, ``"sagittal"`` or ``"axial"`` (module docstring).
        dataset_id: nnU-Net ID of the copy (1-999, not the source's).
        name: dataset name of the copy; default ``<source name>_<plane>``.
        overwrite: replace an existing dataset with this ID once the copy is complete.
        raw_root: folder to write into; default ``$nnUNet_raw``.

    Returns:
        The written dataset folder.

    Raises:
        ValueError: bad arguments, or a source that is not a 3D nnU-Net raw dataset (file and fix named).
        FileNotFoundError: the source or its ``imagesTr``/``dataset.json`` is missing.
        FileExistsError: the ID is taken and ``overwrite`` is false.
    """
    from nnunet_fracture import __version__
    from nnunet_fracture.dataset_conversion.source_dataset import resolve_dataset_folder

    if plane not in PLANE_NORMAL:
        raise ValueError(f"unknown plane {plane!r}; expected one of {', '.join(PLANES)}")
    src = resolve_dataset_folder(source).absolute()
    name = _default_name(src, plane) if name is None else name
    _check_target(dataset_id, name, src)
    dataset_id = int(dataset_id)
    meta_file = src / "dataset.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{meta_file} does not exist. Fix: pass a complete nnU-Net raw dataset.")
    meta = read_json_object(meta_file, "restore the file `nnunet-fracture convert` wrote")
    ending = meta.get("file_ending", ".nii.gz")
    images = src / "imagesTr"
    channel0 = _image_files(images, f"_0000{ending}") if images.is_dir() else []
    if not channel0:
        raise FileNotFoundError(f"{images} holds no <case>_0000{ending} file. Fix: pass a raw dataset written by "
                                f"`nnunet-fracture convert`.")
    case_order = {p.name[: -len(f"_0000{ending}")]: slicing_axis_order(_header_direction(p), plane) for p in channel0}

    if raw_root is None:
        from nnunet_fracture.environment import nnunet_folder

        raw_root = nnunet_folder("nnUNet_raw")
    raw_root = Path(raw_root).absolute()
    folder_name = dataset_folder_name(dataset_id, name)
    with staged_dataset(raw_root, dataset_id, name, overwrite) as tmp:
        array_spacings: list[list[float]] = []
        extra_orders: dict[str, tuple[int, int, int]] = {}
        top_level = sorted(p for p in src.iterdir() if not p.name.startswith("."))
        files = [(sub, path) for sub in top_level if sub.is_dir() for path in sorted(sub.rglob("*")) if path.is_file()]
        refuse_links_out(src, top_level + [p for _, p in files])
        for sub, path in tqdm(files, desc=f"writing {folder_name}", unit="file"):
            target = tmp / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (path.name.endswith(ending) and len(path.name) > len(ending)):
                shutil.copy2(path, target)
                continue
            case = _case_of(path, sub.name, ending)
            order = case_order.get(case)
            if order is None:
                order = extra_orders.setdefault(case, slicing_axis_order(_header_direction(path), plane))
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError as e:
                raise ValueError(f"cannot read {path} (case {case}): {e}. Fix: restore or remove the file.") from None
            if image.GetDimension() != 3:
                raise ValueError(f"{path} (case {case}) is {image.GetDimension()}D; only 3D datasets can be "
                                 f"reoriented")
            out = reorient_image(image, order)
            write_image(out, target)
            if sub.name == "imagesTr" and path.name.endswith(f"_0000{ending}"):
                array_spacings.append(list(out.GetSpacing())[::-1])
            del image, out
        for path in top_level:
            if path.is_file() and path.name not in METADATA_FILES:
                shutil.copy2(path, tmp / path.name)
        boxes_file = src / "boxes.json"
        if boxes_file.is_file():
            boxes = read_json_object(boxes_file, "restore the file `nnunet-fracture convert` wrote")
            for case, boxes_of_case in boxes.items():
                if case not in case_order:
                    raise ValueError(f"{boxes_file} lists case {case}, which has no image {images}/{case}_0000"
                                     f"{ending}. Fix: convert the dataset again.")
                if not isinstance(boxes_of_case, list):
                    raise ValueError(f"{boxes_file}: case {case} should map to a list of boxes")
            boxes = {case: [reorient_box_entry(e, case_order[case]) for e in case_boxes]
                     for case, case_boxes in boxes.items()}
            (tmp / "boxes.json").write_text(json.dumps(boxes, indent=1))
        orders = {tuple(o) for o in case_order.values()}
        target_spacing = planning_target_spacing(array_spacings)
        reorientation = {
            "reoriented_from": src.name,
            "source_folder": str(src),
            "plane": plane,
            "axis_order": list(next(iter(orders))) if len(orders) == 1 else None,
            "case_axis_order": {c: list(o) for c, o in sorted(case_order.items())},
            "axis_order_meaning": "new ITK index axis a (i, j, k) is source axis axis_order[a]; new k, nnU-Net's "
                                  "first array axis, is the axis sliced by the 2d configuration",
            "geometry": "spacing and direction columns permuted with the axes, origin kept: every voxel keeps its "
                        "physical position (the direction may be left-handed)",
            "boxes": "lo/hi permuted with the axes; world_min/world_max unchanged",
            "nnunet_2d_planning": planning_command(dataset_id, target_spacing, plane),
            "nnunet_2d_plans_name": plans_name_for(plane),
            "overwrite_target_spacing": target_spacing,
            "why": "nnU-Net's planner slices 2d along the axis with the largest target spacing; the override makes "
                   "that the first array axis, so the 2d model sees the plane above",
            "plugin_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        new_meta = dict(meta)
        new_meta["name"] = folder_name
        block = dict(new_meta.get("nnunet_fracture") or {})
        block["reorientation"] = reorientation
        new_meta["nnunet_fracture"] = block
        (tmp / "dataset.json").write_text(json.dumps(new_meta, indent=2))
    return raw_root / folder_name
