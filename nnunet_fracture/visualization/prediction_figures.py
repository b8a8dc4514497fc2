"""``nnunet-fracture visualize --probabilities PRED``: every figure and mesh of an nnU-Net prediction folder.

Per case, in ``OUT/cases/<case>/``:

- ``<case>_box<n>.png``: axial, coronal and sagittal views through the centre of box ``n``;
- ``<case>_max.png``: the same through the voxel of maximum probability;
- ``<case>_mip.png``: probability MIP over the CT projection along each axis;
- ``<case>_3d.png``: fracture regions (probability >= threshold) in the bone, two views;
- ``<case>_fracture.stl|ply`` and ``<case>_bone.stl|ply``: the surfaces in world mm (LPS) for 3D Slicer; the
  fracture surface at full resolution, the bone surface sampled with at most :data:`BONE_MESH_MAX_EDGE` points
  per axis (a whole-spine CT surface at full resolution runs to hundreds of MB); no fracture file when no voxel
  reaches the threshold;
- ``case.json``: what the figures show in numbers (maximum and where in world mm, fracture voxels and volume,
  per box its ``boxes.json`` indices and the maximum and mean probability inside), read by the HTML report.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from nnunet_fracture.visualization.case_volumes import (CaseVolumes, load_case, prediction_cases,
                                                        read_boxes_json)
from nnunet_fracture.visualization.overlay_layers import BONE_WINDOW, CTWindow, save_figure
from nnunet_fracture.visualization.projection import CT_PROJECTIONS, mip_figure
from nnunet_fracture.visualization.rendering_3d import BONE_THRESHOLD_HU, bone_volume, case_rendering
from nnunet_fracture.visualization.slice_views import case_views
from nnunet_fracture.visualization.surface_mesh import MESH_FORMATS, mesh_step, surface_mesh, write_mesh

BONE_MESH_MAX_EDGE = 256
CASES_FOLDER = "cases"


def raw_dataset_inputs(dataset: str | Path) -> dict[str, Optional[Path]]:
    """The inputs a dataset written by ``nnunet-fracture convert`` offers: ``images`` (imagesTr) and, where they
    exist, ``boxes`` (boxes.json), ``vertebrae`` (vertebraeTr) and ``ground_truth`` (groundTruthTr).

    Args:
        dataset: the dataset folder, or its ID or name inside ``$nnUNet_raw``.

    Raises:
        FileNotFoundError: no such dataset, or it has no imagesTr.
    """
    folder = Path(dataset)
    if not folder.is_dir():
        from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

        from nnunet_fracture.environment import nnunet_folder

        raw = nnunet_folder("nnUNet_raw")
        try:
            folder = raw / maybe_convert_to_dataset_name(str(dataset))
        except (RuntimeError, ValueError) as e:
            raise FileNotFoundError(f"raw dataset {dataset!r} is neither a folder nor a dataset in nnUNet_raw={raw} "
                                    f"({e})") from e
    if not (folder / "imagesTr").is_dir():
        raise FileNotFoundError(f"raw dataset {folder} has no imagesTr folder. Fix: pass a dataset written by "
                                f"nnunet-fracture convert, or give --images.")

    def optional(name: str) -> Optional[Path]:
        return folder / name if (folder / name).exists() else None

    return {"images": folder / "imagesTr", "boxes": optional("boxes.json"), "vertebrae": optional("vertebraeTr"),
            "ground_truth": optional("groundTruthTr")}


def case_facts(volumes: CaseVolumes, threshold: float) -> dict:
    """The numbers behind one case's figures (JSON-ready)."""
    peak = volumes.max_voxel()
    fracture = volumes.probability >= threshold
    voxel_mm3 = float(np.prod(volumes.spacing_zyx))
    boxes = []
    for box in volumes.boxes:
        inside = volumes.probability[tuple(slice(lo, hi + 1) for lo, hi in zip(box.lo_zyx, box.hi_zyx))]
        boxes.append({"box": box.number, "lo_ijk": list(box.lo_ijk), "hi_ijk": list(box.hi_ijk),
                      "max_probability": float(inside.max()), "mean_probability": float(inside.mean()),
                      "voxels_at_threshold": int((inside >= threshold).sum())})
    return {
        "case": volumes.case,
        "probability_source": volumes.probability_source,
        "voxels_along_lps": list(volumes.grid.GetSize()),
        "spacing_along_lps_mm": [round(v, 4) for v in volumes.grid.GetSpacing()],
        "max_probability": float(volumes.probability.max()),
        "max_world_lps_mm": [round(v, 3) for v in volumes.grid.TransformIndexToPhysicalPoint(peak[::-1])],
        "threshold": threshold,
        "fracture_voxels": int(fracture.sum()),
        "fracture_volume_mm3": float(fracture.sum()) * voxel_mm3,
        "boxes": boxes,
    }


def visualize_case(volumes: CaseVolumes, out: Path, threshold: float = 0.5, window: CTWindow = BONE_WINDOW,
                   ct_projection: str = "max", mesh_format: str = "stl",
                   bone_threshold: float = BONE_THRESHOLD_HU, render_3d: bool = True) -> dict:
    """Write one case's figures, meshes and ``case.json`` into ``out`` (see the module docstring); what an
    earlier run left there under those names goes first, so no stale box view or mesh survives."""
    out = Path(out)
    case = volumes.case
    for pattern in (f"{case}_*.png", f"{case}_*.stl", f"{case}_*.ply", "case.json"):
        for old in out.glob(pattern):
            old.unlink()
    files = []
    for name, fig in case_views(volumes, window):
        files.append(save_figure(fig, out / f"{case}_{name}.png"))
    files.append(save_figure(mip_figure(volumes, window, ct_projection), out / f"{case}_mip.png"))
    facts = case_facts(volumes, threshold)
    if render_3d:
        files.append(save_figure(case_rendering(volumes, threshold, bone_threshold), out / f"{case}_3d.png"))
        fracture = surface_mesh(volumes.probability, threshold, volumes.grid)
        if not fracture.is_empty:
            files.append(write_mesh(fracture, out / f"{case}_fracture.{mesh_format}",
                                    f"{case} fracture p>={threshold:g}"))
        bone_array, level, bone_text = bone_volume(volumes, bone_threshold)
        bone = surface_mesh(bone_array, level, volumes.grid, step=mesh_step(bone_array.shape, BONE_MESH_MAX_EDGE))
        if not bone.is_empty:
            files.append(write_mesh(bone, out / f"{case}_bone.{mesh_format}", f"{case} bone"))
        facts["bone_source"] = bone_text
    facts["files"] = [f.name for f in files]
    (out / "case.json").write_text(json.dumps(facts, indent=1) + "\n")
    return facts


def visualize_predictions(predictions: Path, images: Path, out: Path, boxes: Optional[Path] = None,
                          vertebrae: Optional[Path] = None, ground_truth: Optional[Path] = None,
                          cases: Optional[Sequence[str]] = None, threshold: float = 0.5,
                          window: CTWindow = BONE_WINDOW, ct_projection: str = "max", mesh_format: str = "stl",
                          bone_threshold: float = BONE_THRESHOLD_HU, render_3d: bool = True) -> list[dict]:
    """Figures and meshes for every case of an nnU-Net prediction folder (or the ``cases`` given).

    Everything that can be checked before the first figure is checked first (folders, arguments, requested
    cases, ``boxes.json``); a bad case file stops the run with its case, file and fix named.

    Returns:
        One :func:`case_facts` dictionary per case (also written as ``case.json``).

    Raises:
        FileNotFoundError: a folder, a requested case or a case's CT or prediction is missing.
        ValueError: a bad argument, a geometry mismatch, probabilities outside [0, 1], bad boxes.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    if mesh_format not in MESH_FORMATS:
        raise ValueError(f"unknown mesh format {mesh_format!r}; expected one of {MESH_FORMATS}")
    if ct_projection not in CT_PROJECTIONS:
        raise ValueError(f"unknown CT projection {ct_projection!r}; expected one of {CT_PROJECTIONS}")
    for folder, what in ((images, "image folder"), (vertebrae, "vertebra folder"),
                         (ground_truth, "ground-truth folder")):
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"{what} {folder} does not exist")
    available = prediction_cases(predictions)
    if cases:
        unknown = [c for c in cases if c not in available]
        if unknown:
            raise FileNotFoundError(f"{len(unknown)} requested case(s) have no prediction in {predictions}: "
                                    f"{', '.join(unknown[:10])}. Cases there: {', '.join(available[:10])}"
                                    f"{' ...' if len(available) > 10 else ''}")
        selected = list(dict.fromkeys(cases))
    else:
        selected = available
    box_table = read_boxes_json(boxes) if boxes is not None else None
    results = []
    for case in tqdm(selected, desc="visualize", unit="case"):
        volumes = load_case(case, images, predictions, box_table, boxes, vertebrae, ground_truth)
        results.append(visualize_case(volumes, Path(out) / CASES_FOLDER / case, threshold, window, ct_projection,
                                      mesh_format, bone_threshold, render_3d))
    return results
