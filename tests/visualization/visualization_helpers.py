"""A tiny synthetic case on disk (anisotropic voxels, a probability blob, one box) and pixel helpers that read
what a matplotlib figure actually drew."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHAPE = (10, 18, 22)  # z, y, x
SPACING = (0.8, 1.0, 2.5)  # x, y, z (ITK order)
ORIGIN = (-10.0, 5.0, 20.0)
PEAK = (5, 8, 14)  # z, y, x of the probability maximum
BOX_LO_ZYX, BOX_HI_ZYX = (3, 5, 11), (7, 11, 17)
BONE = np.s_[2:8, 4:14, 5:17]


def probability_blob(shape=SHAPE, peak=PEAK, sigma=(1.0, 2.0, 2.0), height=0.9) -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    d2 = sum(((a - c) / s) ** 2 for a, c, s in zip((z, y, x), peak, sigma))
    return (height * np.exp(-0.5 * d2)).astype(np.float32)


def write_image(array: np.ndarray, path: Path, spacing=SPACING, origin=ORIGIN, direction=None) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def write_case(root: Path, case: str = "c1", direction=None, channels: int = 1) -> dict[str, Path]:
    """images/<case>_0000.nii.gz, pred/<case>.npz (+ .nii.gz), boxes.json, vertebrae/, gt/ under ``root``."""
    ct = np.full(SHAPE, -100, np.int16)
    ct[BONE] = 700
    vertebrae = np.zeros(SHAPE, np.uint8)
    vertebrae[BONE] = 20
    p = probability_blob()
    gt = (p >= 0.6).astype(np.uint8)
    write_image(ct, root / "images" / f"{case}_0000.nii.gz", direction=direction)
    write_image(vertebrae, root / "vertebrae" / f"{case}.nii.gz", direction=direction)
    write_image(gt, root / "gt" / f"{case}.nii.gz", direction=direction)
    write_image((p >= 0.5).astype(np.uint8), root / "pred" / f"{case}.nii.gz", direction=direction)
    stacked = p[None] if channels == 1 else np.stack([1 - p, p])
    np.savez_compressed(root / "pred" / f"{case}.npz", probabilities=stacked)
    boxes = {case: [{"box_id": 1, "lo": list(BOX_LO_ZYX[::-1]), "hi": list(BOX_HI_ZYX[::-1])}]}
    (root / "boxes.json").write_text(json.dumps(boxes))
    return {"images": root / "images", "predictions": root / "pred", "boxes_file": root / "boxes.json",
            "vertebrae": root / "vertebrae", "ground_truth": root / "gt"}


def rgb(fig) -> np.ndarray:
    """What the figure draws, as floats in [0, 1], rows from the top."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float64) / 255.0


def _inside(ax, image: np.ndarray) -> np.ndarray:
    """Pixels of ``image`` (rows from the top) whose centres lie inside ``ax``."""
    height, width = image.shape[:2]
    box = ax.get_window_extent()
    rows, cols = np.mgrid[:height, :width]
    x, y = cols + 0.5, height - rows - 0.5
    return (x > box.x0) & (x < box.x1) & (y > box.y0) & (y < box.y1)


def pixels_in(ax, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Data coordinates (x = column, y = row of the plotted array) of the ``mask`` pixels inside ``ax``."""
    rows, cols = np.nonzero(mask & _inside(ax, image))
    display = np.column_stack([cols + 0.5, image.shape[0] - rows - 0.5])
    return ax.transData.inverted().transform(display)


def reddest(ax, image: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Data coordinates of the reddest pixels of ``ax`` (R - max(G, B) within ``margin`` of its maximum)."""
    redness = image[..., 0] - image[..., 1:].max(axis=-1)
    best = redness[_inside(ax, image)].max()
    return pixels_in(ax, image, redness >= best - margin)


def cyan(image: np.ndarray) -> np.ndarray:
    return (image[..., 0] < 0.3) & (image[..., 1] > 0.7) & (image[..., 2] > 0.7)
