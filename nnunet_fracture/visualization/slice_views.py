"""Axial, coronal and sagittal views of the probability heat map on CT through one voxel: the centre of each
fracture box (its outline drawn thicker), and the voxel of maximum probability."""
from __future__ import annotations

from typing import Iterator, Optional

from matplotlib.figure import Figure

from nnunet_fracture.visualization.case_volumes import CaseVolumes
from nnunet_fracture.visualization.overlay_layers import (BONE_WINDOW, PLANES, CTWindow, draw_box, draw_contour,
                                                          draw_ct, draw_heat, heat_colorbar, new_figure)

_AXIS_NAMES = "zyx"


def views_figure(volumes: CaseVolumes, point_zyx: tuple[int, int, int], title: str,
                 window: CTWindow = BONE_WINDOW, highlight: Optional[int] = None) -> Figure:
    """Three orthogonal planes through ``point_zyx`` (display grid), each with CT, heat map, the outline of
    every box the plane cuts (box ``highlight`` thicker) and the ground-truth contour when there is one.

    Raises:
        ValueError: ``point_zyx`` outside the volume.
    """
    shape = volumes.ct.shape
    if len(point_zyx) != 3 or not all(0 <= int(i) < s for i, s in zip(point_zyx, shape)):
        raise ValueError(f"case {volumes.case}: view point {tuple(point_zyx)} is outside the volume of shape {shape}")
    spacing = volumes.spacing_zyx
    fig = new_figure(15.0, 5.6)
    axes = fig.subplots(1, 3)
    for ax, plane in zip(axes, PLANES):
        index = int(point_zyx[plane.axis])
        draw_ct(ax, plane, plane.cut(volumes.ct, index), window, spacing)
        draw_heat(ax, plane, plane.cut(volumes.probability, index), spacing)
        if volumes.ground_truth is not None:
            draw_contour(ax, plane.cut(volumes.ground_truth > 0, index))
        for box in volumes.boxes:
            if box.lo_zyx[plane.axis] <= index <= box.hi_zyx[plane.axis]:
                draw_box(ax, (box.lo_zyx[plane.rows], box.hi_zyx[plane.rows]),
                         (box.lo_zyx[plane.cols], box.hi_zyx[plane.cols]), box.number, highlight == box.number)
        ax.set_title(f"{plane.name}, {_AXIS_NAMES[plane.axis]} = {index}", fontsize=10)
    heat_colorbar(fig, axes)
    p = float(volumes.probability[tuple(point_zyx)])
    legend = "cyan: boxes" + (", lime: ground truth" if volumes.ground_truth is not None else "")
    fig.suptitle(f"{volumes.case}: {title}; p = {p:.3f} at (z, y, x) = {tuple(int(i) for i in point_zyx)}\n"
                 f"{volumes.probability_source}; {legend}; window {window.level:g}/{window.width:g} HU", fontsize=10)
    return fig


def case_views(volumes: CaseVolumes, window: CTWindow = BONE_WINDOW) -> Iterator[tuple[str, Figure]]:
    """``("box<n>", figure)`` through the centre of every box, then ``("max", figure)`` through the most probable
    voxel; figures are made one at a time."""
    for box in volumes.boxes:
        yield f"box{box.number}", views_figure(volumes, box.centre_zyx, f"centre of box {box.number}", window,
                                               highlight=box.number)
    peak = volumes.max_voxel()
    yield "max", views_figure(volumes, peak, "maximum probability", window)
