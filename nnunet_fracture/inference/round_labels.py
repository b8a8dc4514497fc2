"""The training labels of a self-training round: a pseudo-mask with nnU-Net's ``ignore`` label where it is unsure.

Two kinds of voxels become ``ignore`` (:data:`~nnunet_fracture.inference.dataset_export.IGNORE_LABEL`), so the
next model is taught neither that they are fracture nor that they are not:

- **the uncertainty band**: box voxels left out of the mask whose probability lies in ``[low, high)``;
- **the border ring**: the mask's voxels within ``ring`` voxels of its border, i.e. the mask minus its binary
  erosion by ``ring`` face-connected steps, taken box by box. On the bench, two thirds of a round's false-positive
  voxels lie within one voxel of the true fracture: the pseudo-masks are about one voxel too thick. Simple Does It
  (Khoreva et al., CVPR 2017, the "box^i" labels) leaves such a ring between a confident core and the background
  unlabelled. A box whose mask the erosion would empty keeps its mask: a round needs foreground to learn from.

Outside the boxes the labels stay what they are (0): that is known background.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from nnunet_fracture.dataset_conversion.source_dataset import BoxEntry
from nnunet_fracture.inference.dataset_export import IGNORE_LABEL


def ignored_labels(mask: np.ndarray, probability: np.ndarray, boxes: Sequence[BoxEntry],
                   band: Optional[tuple[float, float]] = None, ring: int = 0) -> np.ndarray:
    """The labels of one case (uint8): the mask (1), :data:`IGNORE_LABEL` on the band and the ring (module
    docstring), 0 elsewhere.

    Args:
        mask: the case's 0/1 pseudo-mask.
        probability: the fracture probability the mask came from (same shape).
        boxes: the case's boxes.
        band: ``(low, high)`` probability band of uncertain box voxels outside the mask, or ``None``.
        ring: width in voxels of the border ring inside each box's mask (0 = none).

    Raises:
        ValueError: if the shapes differ or ``ring`` is not an integer >= 0.
    """
    if mask.shape != probability.shape:
        raise ValueError(f"mask shape {mask.shape} differs from probability shape {probability.shape}")
    if isinstance(ring, bool) or not isinstance(ring, (int, np.integer)) or ring < 0:
        raise ValueError(f"ring must be an integer >= 0 (voxels), got {ring!r}")
    labels = mask.astype(np.uint8, copy=True)
    for entry in boxes:
        region = entry.region
        inside = labels[region]  # a view: writes go to labels
        if ring:
            foreground = mask[region] > 0
            core = ndimage.binary_erosion(foreground, iterations=int(ring))
            if core.any():
                inside[foreground & ~core] = IGNORE_LABEL
        if band is not None:
            p = probability[region]
            inside[(inside == 0) & (p >= band[0]) & (p < band[1])] = IGNORE_LABEL
    return labels
