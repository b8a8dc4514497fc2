"""The layers of one 2D panel: windowed CT, probability heat map, box outlines and mask contours.

Panels show an array plane of the display grid (:mod:`nnunet_fracture.visualization.case_volumes`): a
:class:`Plane` names the array axis it cuts (or projects) along, which array axes become rows and columns, and
whether row 0 is drawn at the top (axial: anterior up) or at the bottom (coronal, sagittal: head up). Pixels
are drawn with their true proportions (``aspect`` = row spacing / column spacing), and every layer is drawn in
array-index coordinates, so outlines and contours sit exactly on the voxels they describe.

Colours: probability from yellow (low) to red (high), semi-transparent and more opaque where higher, nothing
below :data:`HEAT_FLOOR`; boxes cyan (the box a view is centred on drawn thicker); ground truth lime.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from matplotlib import cm, colors
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

HEAT_CMAP = "autumn_r"
"""Colour map of the probability: yellow at 0, red at 1 (the reddest pixels are the most probable)."""
HEAT_FLOOR = 0.02
"""Probabilities below this are left transparent."""
HEAT_ALPHA = (0.3, 0.8)
"""Opacity of the heat map at probability 0 and 1 (linear in between)."""
BOX_COLOUR = "cyan"
GT_COLOUR = "lime"
DPI = 100


@dataclass(frozen=True)
class CTWindow:
    """A CT display window in HU: ``level`` (centre) and ``width``."""

    level: float
    width: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.level) and np.isfinite(self.width) and self.width > 0):
            raise ValueError(f"CT window needs a finite level and a positive width, got level {self.level}, width "
                             f"{self.width}. Fix: e.g. --window 400 1800 (bone) or --window 40 400 (soft tissue).")

    @property
    def vmin(self) -> float:
        return self.level - self.width / 2

    @property
    def vmax(self) -> float:
        return self.level + self.width / 2


BONE_WINDOW = CTWindow(level=400.0, width=1800.0)
"""Default window: HU -500 .. 1300, soft tissue dark grey, cortical bone white."""


@dataclass(frozen=True)
class Plane:
    """An array plane: cut along array ``axis``; array axes ``rows`` and ``cols`` become the panel's rows and
    columns; ``origin`` is matplotlib's (``"upper"``: row 0 at the top). ``edges`` label the panel's
    (top, bottom, left, right) anatomical directions on the LPS display grid."""

    name: str
    axis: int
    rows: int
    cols: int
    origin: str
    edges: tuple[str, str, str, str]

    def aspect(self, spacing_zyx: tuple[float, float, float]) -> float:
        """Height / width of one pixel for true proportions."""
        return spacing_zyx[self.rows] / spacing_zyx[self.cols]

    def cut(self, volume: np.ndarray, index: int) -> np.ndarray:
        """The 2D plane ``index`` along :attr:`axis` (rows, cols)."""
        return np.take(volume, index, axis=self.axis)


PLANES = (
    Plane("axial", axis=0, rows=1, cols=2, origin="upper", edges=("A", "P", "R", "L")),
    Plane("coronal", axis=1, rows=0, cols=2, origin="lower", edges=("S", "I", "R", "L")),
    Plane("sagittal", axis=2, rows=0, cols=1, origin="lower", edges=("S", "I", "A", "P")),
)


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas, outside pyplot's global state: it needs no screen, changes no backend and
    is freed by garbage collection (safe in loops over many cases)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG (parent folders created) at the figure's own dpi."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi)
    return path


def draw_ct(ax: Axes, plane: Plane, ct2d: np.ndarray, window: CTWindow, spacing_zyx) -> AxesImage:
    """Grey CT in ``window``; sets the panel's proportions, orientation and limits."""
    image = ax.imshow(ct2d, cmap="gray", vmin=window.vmin, vmax=window.vmax, aspect=plane.aspect(spacing_zyx),
                      origin=plane.origin, interpolation="nearest")
    rows, cols = ct2d.shape
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim((rows - 0.5, -0.5) if plane.origin == "upper" else (-0.5, rows - 0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    top, bottom, left, right = plane.edges
    style = dict(transform=ax.transAxes, color="white", fontsize=9, fontweight="bold")
    ax.text(0.5, 0.99, top, ha="center", va="top", **style)
    ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
    ax.text(0.01, 0.5, left, ha="left", va="center", **style)
    ax.text(0.99, 0.5, right, ha="right", va="center", **style)
    return image


def heat_norm() -> colors.Normalize:
    return colors.Normalize(vmin=0.0, vmax=1.0)


def draw_heat(ax: Axes, plane: Plane, p2d: np.ndarray, spacing_zyx) -> AxesImage:
    """Probability heat map over the CT (transparent below :data:`HEAT_FLOOR`)."""
    low, high = HEAT_ALPHA
    alpha = np.where(p2d >= HEAT_FLOOR, low + (high - low) * np.clip(p2d, 0.0, 1.0), 0.0)
    return ax.imshow(np.ma.masked_less(p2d, HEAT_FLOOR), cmap=HEAT_CMAP, norm=heat_norm(), alpha=alpha,
                     aspect=plane.aspect(spacing_zyx), origin=plane.origin, interpolation="nearest")


def heat_colorbar(fig: Figure, axes, label: str = "fracture probability") -> None:
    """One colour bar for the heat map of ``axes`` (present even when nothing is above the floor)."""
    fig.colorbar(cm.ScalarMappable(norm=heat_norm(), cmap=HEAT_CMAP), ax=axes, fraction=0.02, pad=0.01, label=label)


def draw_box(ax: Axes, rows: tuple[int, int], cols: tuple[int, int], number: int, highlight: bool = False) -> Rectangle:
    """Outline the inclusive index ranges ``rows`` x ``cols`` along the outer voxel edges; ``number`` is written
    just inside the box's upper left corner (call after :func:`draw_ct`, which fixes the panel's orientation)."""
    (r0, r1), (c0, c1) = rows, cols
    rect = Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, edgecolor=BOX_COLOUR,
                     linewidth=2.0 if highlight else 1.0, linestyle="-" if highlight else "--")
    ax.add_patch(rect)
    top = r0 - 0.5 if ax.yaxis_inverted() else r1 + 0.5
    ax.annotate(str(number), (c0 - 0.5, top), xytext=(2, -2), textcoords="offset points", color=BOX_COLOUR,
                fontsize=8, ha="left", va="top")
    return rect


def draw_contour(ax: Axes, mask2d: Optional[np.ndarray], colour: str = GT_COLOUR) -> None:
    """Outline a binary mask (nothing if it is empty)."""
    if mask2d is None or not mask2d.any():
        return
    ax.contour(mask2d.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.0)
