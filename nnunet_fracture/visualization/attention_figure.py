"""The PNG ``attention-maps`` writes per gate level: axial, coronal and sagittal planes of the CT with the gate's
coefficients as a heat map (:mod:`nnunet_fracture.inference.attention_maps` computes them)."""
from __future__ import annotations

import numpy as np

from nnunet_fracture.visualization.overlay_layers import (BONE_WINDOW, PLANES, CTWindow, draw_ct, draw_heat,
                                                          heat_colorbar, new_figure)


def level_figure(ct_display: np.ndarray, map_display: np.ndarray, spacing_zyx, point_zyx, title: str,
                 window: CTWindow = BONE_WINDOW):
    """Axial, coronal and sagittal planes through ``point_zyx`` (display grid): CT with the coefficients."""
    fig = new_figure(15.0, 5.6)
    axes = fig.subplots(1, 3)
    for ax, plane in zip(axes, PLANES):
        index = int(point_zyx[plane.axis])
        draw_ct(ax, plane, plane.cut(ct_display, index), window, spacing_zyx)
        draw_heat(ax, plane, plane.cut(map_display, index), spacing_zyx)
        ax.set_title(f"{plane.name}, {'zyx'[plane.axis]} = {index}", fontsize=10)
    heat_colorbar(fig, axes, label="attention coefficient")
    fig.suptitle(title, fontsize=10)
    return fig
