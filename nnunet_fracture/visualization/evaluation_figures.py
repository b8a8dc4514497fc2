"""PNG figures that show what a model predicted: probability heat maps on CT with the ground truth outlined,
the pooled precision-recall curve, the voxel probability histogram and the detection ROC curves."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a screen
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from nnunet_fracture.evaluation.threshold_curves import EDGES, ScoreHistogram  # noqa: E402

BONE_WINDOW = (-250.0, 1250.0)  # HU range shown: soft tissue dark grey, cortical bone white
PREDICTION_COLOUR = "magenta"  # outline of a predicted mask, beside the green ground truth


def focus_point(gt: np.ndarray, probabilities: Optional[np.ndarray]) -> tuple[int, int, int]:
    """The (z, y, x) voxel the figure is centred on: the ground-truth voxel nearest to the centre of mass of the
    largest ground-truth component (so that both views cut a fracture even when a case has several), or else the
    most probable voxel, or else the volume's centre."""
    if gt.any():
        import cc3d

        components = cc3d.connected_components(np.ascontiguousarray(gt, dtype=np.uint8), connectivity=26)
        largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
        voxels = np.argwhere(components == largest)
        nearest = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
        return tuple(int(c) for c in nearest)  # type: ignore[return-value]
    if probabilities is not None and probabilities.max() > 0:
        return tuple(int(i) for i in np.unravel_index(np.argmax(probabilities), probabilities.shape))  # type: ignore[return-value]
    return tuple(s // 2 for s in gt.shape)  # type: ignore[return-value]


def overlay_figure(ct: np.ndarray, gt: np.ndarray, probabilities: Optional[np.ndarray],
                   spacing_zyx: tuple[float, float, float], title: str, out_file: Path,
                   prediction: Optional[np.ndarray] = None) -> Path:
    """Write axial and sagittal views through :func:`focus_point`.

    Args:
        ct: CT in HU, array order (z, y, x).
        gt: ground-truth fracture mask, same shape.
        probabilities: fracture probability in [0, 1], same shape, shown as a heat map; or None.
        spacing_zyx: voxel spacing in mm in array order, so that the views have true proportions.
        title: figure title (case id and metrics).
        out_file: PNG path (parent folders are created).
        prediction: the predicted mask, same shape; outlined in a second colour when there are no
            probabilities (a folder of masks, such as pseudo-masks, is being judged).
    """
    shapes = {"CT": ct.shape, "ground truth": gt.shape}
    shapes.update({name: a.shape for name, a in (("probabilities", probabilities), ("prediction", prediction))
                   if a is not None})
    if len(set(shapes.values())) > 1:
        raise ValueError("the arrays must have the same shape: " + ", ".join(f"{k} {v}" for k, v in shapes.items()))
    outline = prediction if probabilities is None and prediction is not None else None
    z, y, x = focus_point(gt, probabilities if outline is None else outline.astype(np.float32))
    sz, sy, sx = spacing_zyx
    views = [
        ("axial", np.s_[z, :, :], sy / sx),
        ("sagittal", np.s_[::-1, :, x], sz / sy),  # head up
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.5))
    heat = None
    for ax, (name, index, aspect) in zip(axes, views):
        ax.imshow(ct[index], cmap="gray", vmin=BONE_WINDOW[0], vmax=BONE_WINDOW[1], aspect=aspect,
                  interpolation="nearest")
        if probabilities is not None:
            p = probabilities[index]
            heat = ax.imshow(np.ma.masked_less(p, 0.05), cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.6,
                             aspect=aspect, interpolation="nearest")
        g = gt[index]
        if g.any():
            ax.contour(g.astype(float), levels=[0.5], colors=["lime"], linewidths=1.0)
        if outline is not None and outline[index].any():
            ax.contour(outline[index].astype(float), levels=[0.5], colors=[PREDICTION_COLOUR], linewidths=1.0,
                       linestyles="dashed")
        ax.set_title(f"{name} (z={z})" if name == "axial" else f"{name} (x={x})")
        ax.set_axis_off()
    if heat is not None:
        fig.colorbar(heat, ax=axes, fraction=0.025, label="fracture probability")
    legend = [Line2D([], [], color="lime", label="ground truth")]
    if outline is not None:
        legend.append(Line2D([], [], color=PREDICTION_COLOUR, linestyle="dashed", label="predicted mask"))
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


def pr_curve_figure(histogram: ScoreHistogram, title: str, out_file: Path) -> Path:
    """Write the precision-recall curve of a (pooled) :class:`ScoreHistogram`, best-F1 point marked."""
    curves = histogram.curves()
    best = histogram.best_threshold()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.step(curves.recall, curves.precision, where="post", color="tab:blue",
            label=f"PR curve (PR-AUC {histogram.average_precision():.3f})")
    if not np.isnan(best.threshold):
        ax.plot([best.recall], [best.precision], "o", color="tab:red",
                label=f"best F1 {best.f1:.3f} at p >= {best.threshold:.3g}")
    _save_unit_square(fig, ax, "recall (voxels)", "precision (voxels)", title, out_file, legend=("lower left", 8))
    return out_file


def probability_histogram_figure(histogram: ScoreHistogram, title: str, out_file: Path) -> Path:
    """Write fracture vs non-fracture voxel counts per probability (log y) from a :class:`ScoreHistogram`.

    The accumulator's bins are regrouped into 50 uniform bins of width 0.02 for display."""
    display = np.linspace(0.0, 1.0, 51)
    group = np.minimum(np.searchsorted(display, EDGES, side="right") - 1, len(display) - 2)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for counts, colour, name in ((histogram.negatives, "tab:gray", "non-fracture voxels"),
                                 (histogram.positives, "tab:red", "fracture voxels")):
        grouped = np.bincount(group, weights=counts, minlength=len(display) - 1)
        ax.stairs(grouped, display, color=colour, fill=True, alpha=0.5, label=f"{name} ({int(counts.sum()):,})")
    ax.set_yscale("log")
    ax.set_xlabel("fracture probability")
    ax.set_ylabel("voxels")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


def detection_roc_figure(items: dict[str, tuple[Sequence[float], Sequence[bool]]], title: str,
                         out_file: Path) -> Optional[Path]:
    """Write one ROC curve (scikit-learn ``roc_curve``) per detection level, e.g. case, vertebra, axial slice.

    Args:
        items: level name -> (scores, labels) of its items.
        title: figure title.
        out_file: PNG path (parent folders are created).

    Returns:
        ``out_file``, or None (nothing written) when no level has both fractured and fracture-free items.
    """
    drawable = {name: (np.asarray(s, float), np.asarray(y, bool)) for name, (s, y) in items.items()
                if 0 < int(np.sum(y)) < len(y)}
    if not drawable:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (scores, labels) in drawable.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr,
                label=f"{name}: AUC {roc_auc_score(labels, scores):.3f} ({labels.sum()}+ / {(~labels).sum()}-)")
    ax.plot([0, 1], [0, 1], ":", color="gray", linewidth=1)
    skipped = [name for name in items if name not in drawable]
    if skipped:
        ax.text(0.98, 0.02, "one class only: " + ", ".join(skipped), ha="right", va="bottom", fontsize=7,
                transform=ax.transAxes)
    _save_unit_square(fig, ax, "false-positive rate (fracture-free items called fracture)",
                      "sensitivity (fractured items found)", title, out_file,
                      legend=("lower right" if not skipped else "center right", 7))
    return out_file


def _save_unit_square(fig, ax, xlabel: str, ylabel: str, title: str, out_file: Path,
                      legend: tuple[str, int]) -> None:
    """Finish a curve on the unit square (limits, labels, grid, legend at ``(location, font size)``), save it as
    ``out_file`` (its folder created) and close the figure."""
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc=legend[0], fontsize=legend[1])
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
