"""A shaded 3D picture of the thresholded fracture regions (red) inside the vertebrae (translucent grey), with
the fracture boxes as cyan wire frames, seen from the front and from the patient's left.

Bone comes from the vertebra label map where there is one (every label > 0), else from the CT at a bone
threshold in HU. Surfaces are :func:`~nnunet_fracture.visualization.surface_mesh.surface_mesh` iso-surfaces in
world mm (LPS), sampled coarsely enough to stay below :data:`MAX_RENDER_FACES` triangles per surface; the axes
have equal millimetre scales, so anisotropic voxels look as they are. The fracture is drawn after the bone and
never hidden by it (matplotlib sorts whole surfaces, not triangles, so depth is shown by translucency).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

from nnunet_fracture.dataset_conversion.box_geometry import index_to_physical
from nnunet_fracture.visualization.case_volumes import CaseVolumes, DisplayBox
from nnunet_fracture.visualization.overlay_layers import BOX_COLOUR, new_figure
from nnunet_fracture.visualization.surface_mesh import Mesh, mesh_step, surface_mesh

FRACTURE_COLOUR = (0.9, 0.05, 0.05)
BONE_COLOUR = (0.72, 0.72, 0.72)
BONE_ALPHA = 0.25
BONE_THRESHOLD_HU = 200.0
"""Default CT level of the bone surface when there is no vertebra label map."""
MAX_RENDER_FACES = 60_000
RENDER_MAX_EDGE = 128
"""Marching-cubes samples per axis at most, for the rendered (not the exported) surfaces."""
VIEWS = (("anterior view", 10.0, -90.0), ("left lateral view", 10.0, 0.0))
"""(title, elevation, azimuth): camera in front of the patient (-y in LPS), then at the patient's left (+x)."""


def bone_volume(volumes: CaseVolumes, bone_threshold: float = BONE_THRESHOLD_HU) -> tuple[np.ndarray, float, str]:
    """``(volume, level, description)`` whose iso-surface is the bone."""
    if volumes.vertebrae is not None and volumes.vertebrae.any():
        return (volumes.vertebrae > 0).astype(np.float32), 0.5, "vertebra label map"
    return volumes.ct, float(bone_threshold), f"CT >= {bone_threshold:g} HU (no vertebra label map)"


def render_mesh(volume: np.ndarray, level: float, grid: sitk.Image, max_faces: int = MAX_RENDER_FACES) -> Mesh:
    """An iso-surface coarse enough for matplotlib: the step grows until at most ``max_faces`` triangles."""
    step = mesh_step(volume.shape, RENDER_MAX_EDGE)
    while True:
        mesh = surface_mesh(volume, level, grid, step=step)
        if len(mesh.faces) <= max_faces or step >= max(volume.shape):
            return mesh
        step += 1


def box_edges(box: DisplayBox, grid: sitk.Image) -> np.ndarray:
    """The 12 edges (12, 2, 3) in world mm of the box's outer voxel faces."""
    lo = np.array(box.lo_zyx[::-1], dtype=np.float64) - 0.5
    hi = np.array(box.hi_zyx[::-1], dtype=np.float64) + 0.5
    corners = np.array([[(hi if (n >> a) & 1 else lo)[a] for a in range(3)] for n in range(8)])
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
    origin, matrix = index_to_physical(grid)
    world = origin + corners @ matrix.T
    return np.array([[world[a], world[b]] for a, b in edges])


def render_figure(fracture: Mesh, bone: Mesh, boxes: Optional[np.ndarray], title: str) -> Figure:
    """Two views of the fracture (red) and bone (grey) meshes, ``boxes`` (n, 12, 2, 3) as wire frames."""
    parts = [m.vertices for m in (fracture, bone) if not m.is_empty]
    if boxes is not None and len(boxes):
        parts.append(boxes.reshape(-1, 3))
    points = np.concatenate(parts) if parts else np.zeros((1, 3))
    low, high = points.min(axis=0), points.max(axis=0)
    ranges = np.maximum(high - low, 1.0)
    tall = ranges[2] > 1.5 * max(ranges[0], ranges[1])  # a spine segment: give the views more height
    fig = new_figure(11.0, 9.0) if tall else new_figure(13.0, 6.5)
    for n, (name, elevation, azimuth) in enumerate(VIEWS, start=1):
        ax = fig.add_subplot(1, len(VIEWS), n, projection="3d", computed_zorder=False)
        if not bone.is_empty:
            ax.add_collection3d(Poly3DCollection(bone.triangles(), facecolors=BONE_COLOUR, alpha=BONE_ALPHA,
                                                 linewidths=0, shade=True, zorder=1))
        if not fracture.is_empty:
            ax.add_collection3d(Poly3DCollection(fracture.triangles(), facecolors=FRACTURE_COLOUR, alpha=1.0,
                                                 linewidths=0, shade=True, zorder=2))
        if boxes is not None and len(boxes):
            ax.add_collection3d(Line3DCollection(boxes.reshape(-1, 2, 3), colors=BOX_COLOUR, linewidths=1.0,
                                                 zorder=3))
        ax.set_xlim(low[0], low[0] + ranges[0])
        ax.set_ylim(low[1], low[1] + ranges[1])
        ax.set_zlim(low[2], low[2] + ranges[2])
        ax.set_box_aspect(tuple(ranges), zoom=1.25)
        ax.view_init(elev=elevation, azim=azimuth)
        ax.set_xlabel("x (mm, to L)", fontsize=8)
        ax.set_ylabel("y (mm, to P)", fontsize=8)
        ax.set_zlabel("z (mm, to S)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title, fontsize=10)
    return fig


def case_rendering(volumes: CaseVolumes, threshold: float, bone_threshold: float = BONE_THRESHOLD_HU) -> Figure:
    """The 3D figure of one case: voxels with probability >= ``threshold`` inside the bone."""
    fracture = render_mesh(volumes.probability, threshold, volumes.grid)
    bone_array, level, bone_text = bone_volume(volumes, bone_threshold)
    bone = render_mesh(bone_array, level, volumes.grid)
    boxes = np.array([box_edges(b, volumes.grid) for b in volumes.boxes]) if volumes.boxes else None
    n_voxels = int((volumes.probability >= threshold).sum())
    what = (f"red: {n_voxels} voxels with p >= {threshold:g}" if n_voxels
            else f"no voxel with p >= {threshold:g} (max {float(volumes.probability.max()):.3f})")
    return render_figure(fracture, bone, boxes, f"{volumes.case}: {what}; grey: bone from {bone_text}; "
                                                f"cyan: boxes\nworld mm, LPS")
