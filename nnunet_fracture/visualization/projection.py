"""Maximum-intensity projections (MIP) of the fracture probability over a projection of the CT, along each
array axis: where in the whole volume the model puts fracture, in three pictures."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from nnunet_fracture.visualization.case_volumes import CaseVolumes
from nnunet_fracture.visualization.overlay_layers import (BONE_WINDOW, PLANES, CTWindow, Plane, draw_box,
                                                          draw_contour, draw_ct, draw_heat, heat_colorbar,
                                                          new_figure)

CT_PROJECTIONS = ("max", "mean")
"""How the CT behind the probability MIP is projected: ``max`` (bone stands out; shown in the CT window) or
``mean`` (a radiograph-like picture; shown between its own 1st and 99.5th percentiles)."""


def project(volume: np.ndarray, plane: Plane, how: str = "max") -> np.ndarray:
    """Project ``volume`` along ``plane.axis`` (``max`` or ``mean``) to a (rows, cols) image."""
    if how == "max":
        return volume.max(axis=plane.axis)
    if how == "mean":
        return volume.mean(axis=plane.axis, dtype=np.float64)
    raise ValueError(f"unknown projection {how!r}; expected one of {CT_PROJECTIONS}")


def mip_figure(volumes: CaseVolumes, window: CTWindow = BONE_WINDOW, ct_projection: str = "max") -> Figure:
    """Probability MIP over the CT projection along z (axial), y (coronal) and x (sagittal), with every box's
    outline and the ground truth's projected contour."""
    if ct_projection not in CT_PROJECTIONS:
        raise ValueError(f"unknown CT projection {ct_projection!r}; expected one of {CT_PROJECTIONS}")
    spacing = volumes.spacing_zyx
    fig = new_figure(15.0, 5.6)
    axes = fig.subplots(1, 3)
    for ax, plane in zip(axes, PLANES):
        ct = project(volumes.ct, plane, ct_projection)
        shown = window
        if ct_projection == "mean":
            low, high = np.percentile(ct, [1.0, 99.5])
            shown = CTWindow(level=(low + high) / 2, width=max(float(high - low), 1.0))
        draw_ct(ax, plane, ct, shown, spacing)
        draw_heat(ax, plane, project(volumes.probability, plane, "max"), spacing)
        if volumes.ground_truth is not None:
            draw_contour(ax, project(volumes.ground_truth > 0, plane, "max"))
        for box in volumes.boxes:
            draw_box(ax, (box.lo_zyx[plane.rows], box.hi_zyx[plane.rows]),
                     (box.lo_zyx[plane.cols], box.hi_zyx[plane.cols]), box.number)
        ax.set_title(f"{plane.name} projection (along {'zyx'[plane.axis]})", fontsize=10)
    heat_colorbar(fig, axes, label="maximum fracture probability along the ray")
    legend = "cyan: boxes" + (", lime: ground truth" if volumes.ground_truth is not None else "")
    fig.suptitle(f"{volumes.case}: probability MIP (max {float(volumes.probability.max()):.3f}) over CT "
                 f"{ct_projection} projection\n{volumes.probability_source}; {legend}", fontsize=10)
    return fig
