"""The training labels of a self-training round: a pseudo-mask with nnU-Net's ``ignore`` label where it is unsure.

Three kinds of voxels become ``ignore`` (:data:`~nnunet_fracture.inference.dataset_export.IGNORE_LABEL`), so the
next model is taught neither that they are fracture nor that they are not:

- **the uncertainty band**: box voxels left out of the mask whose probability lies in ``[low, high)``;
- **the border ring**: the mask's voxels within ``ring`` voxels of its border, i.e. the mask minus its binary
  erosion by ``ring`` face-connected steps, taken box by box. On the bench, two thirds of a round's false-positive
  voxels lie within one voxel of the true fracture: the pseudo-masks are about one voxel too thick. Simple Does It
  (Khoreva et al., CVPR 2017, the "box^i" labels) leaves such a ring between a confident core and the background
  unlabelled. A box whose mask the erosion would empty keeps its mask: a round needs foreground to learn from;
- **unsure boxes**: every voxel of the boxes whose pseudo-mask is least confident (:func:`unsure_boxes`), unless
  it also lies in a confident box. BoxTeacher (Cheng et al., CVPR 2023) weighs each pseudo-mask by its
  mask-aware confidence, the mean probability over the mask, so that poor masks teach little; the stock trainer
  takes no weights, so the least confident share of boxes teaches nothing instead, as curriculum labelling keeps
  only the most confident percentile of pseudo-labels (Cascante-Bonilla et al., AAAI 2021). On the bench phantom
  the weak model puts a blob of healthy cancellous bone in each cleft box, and a round trained on those blobs
  marks one in every healthy vertebral body. Its cleft masks are mostly its least confident: the lowest 40 % of
  boxes held 11 of 11, 8 of 12 and 8 of 10 cleft boxes on three seeds, and where all were caught the round's
  false positives on fracture-free cases fell from 2,835 and 1,279 voxels to 328 and 10 (README, quality bench).
- **faint boxes**: every voxel of the boxes whose pseudo-mask does not stand out from the rest of its box
  (:func:`faint_boxes`): the median HU of the mask differs from the median HU of the box's other voxels (those
  the mask could have taken: inside the box's vertebra with ``--inside-vertebra``) by less than ``min_hu``, either
  way - a sclerotic band is denser than the bone around it, a cleft darker. A mask that looks like the bone around
  it marks nothing a reader could see. Confidence does not catch these everywhere: on one bench seed the weak
  model's blobs of healthy bone in the cleft boxes were as confident as its band masks (mean P 0.69-0.80 against
  0.68-0.85), while their HU contrast was -63 to +30 HU against +88 to +331 HU for the bands.
- **the margin of dark lesions**: the voxels within ``dark_margin`` face-connected steps outside the mask of a box
  whose mask holds its dark voxels (``--dark-lesions``, :mod:`~nnunet_fracture.inference.lesion_polarity`), inside
  that box. A cleft's dark core is what a threshold finds; its edges (partial volume) and its course through the
  cortical shell (outside the vertebra's interior) are neither dark enough to keep nor sure to be bone. On the
  bench's training cases (three seeds) 47 % of the cleft voxels in dark boxes were labelled background without
  the margin, 20 % with one voxel and 11 % with two, while the share of the boxes' healthy bone left unlabelled
  rose from 19 % (the band) to 28 % and 42 %.

Outside the boxes the labels stay what they are (0): that is known background.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage

from nnunet_fracture.dataset_conversion.source_dataset import BoxEntry
from nnunet_fracture.inference.dataset_export import IGNORE_LABEL


def check_unsure_share(share: object) -> float:
    """``share`` as a float in [0, 1).

    Raises:
        ValueError: otherwise (1 would leave a round nothing to learn from).
    """
    ok = isinstance(share, (int, float)) and not isinstance(share, bool) and math.isfinite(share) and 0 <= share < 1
    if not ok:
        raise ValueError(f"--ignore-unsure-boxes must be a share of the boxes in [0, 1), got {share!r}")
    return float(share)


def unsure_boxes(rows: Iterable[Mapping], share: float) -> dict[str, set[int]]:
    """The ``floor(share x N)`` least confident of ``N`` boxes, as ``{case: {box_id, ...}}``.

    A box's confidence is its ``mask_confidence`` (the mean probability over its pseudo-mask); a box whose mask is
    empty (NaN) counts as 0, the least confident. Ties keep the rows' order (case, then box).

    Args:
        rows: one mapping per box with ``case``, ``box_id`` and ``mask_confidence``
            (:func:`~nnunet_fracture.inference.pseudo_masks.case_pseudo_mask`'s rows).
        share: the share of boxes to return, in [0, 1).
    """
    share = check_unsure_share(share)
    rows = list(rows)
    count = math.floor(round(share * len(rows), 6))
    confidence = [0.0 if math.isnan(r["mask_confidence"]) else float(r["mask_confidence"]) for r in rows]
    chosen: dict[str, set[int]] = {}
    for index in sorted(range(len(rows)), key=lambda n: confidence[n])[:count]:  # sorted() is stable
        chosen.setdefault(rows[index]["case"], set()).add(int(rows[index]["box_id"]))
    return chosen


def check_dark_margin(margin: object) -> int:
    """``margin`` (voxels) checked: an integer >= 0.

    Raises:
        ValueError: otherwise.
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise ValueError(f"--ignore-dark-margin must be a whole number of voxels >= 0, got {margin!r}")
    return int(margin)


def check_faint_hu(min_hu: object) -> float:
    """``min_hu`` as a float >= 0 (0: no box is faint).

    Raises:
        ValueError: otherwise.
    """
    ok = isinstance(min_hu, (int, float)) and not isinstance(min_hu, bool) and math.isfinite(min_hu) and min_hu >= 0
    if not ok:
        raise ValueError(f"--ignore-faint-boxes must be a HU difference >= 0, got {min_hu!r}")
    return float(min_hu)


def mask_contrast_hu(hu: np.ndarray, mask: np.ndarray, allowed: np.ndarray) -> float:
    """Median HU over ``mask`` minus median HU over the ``allowed`` voxels outside it (one box's arrays); NaN when
    either set is empty.

    Raises:
        ValueError: if the shapes differ.
    """
    if not hu.shape == mask.shape == allowed.shape:
        raise ValueError(f"hu {hu.shape}, mask {mask.shape} and allowed {allowed.shape} must have one shape")
    mask = np.asarray(mask, dtype=bool)
    rest = np.asarray(allowed, dtype=bool) & ~mask
    if not mask.any() or not rest.any():
        return math.nan
    return float(np.median(hu[mask]) - np.median(hu[rest]))


def faint_boxes(rows: Iterable[Mapping], min_hu: float) -> dict[str, set[int]]:
    """The boxes whose ``mask_contrast_hu`` lies within ``(-min_hu, min_hu)``, as ``{case: {box_id, ...}}``; a box
    with no contrast (NaN: an empty mask) is faint too. None when ``min_hu`` is 0."""
    min_hu = check_faint_hu(min_hu)
    chosen: dict[str, set[int]] = {}
    if min_hu == 0:
        return chosen
    for r in rows:
        contrast = float(r["mask_contrast_hu"])
        if math.isnan(contrast) or abs(contrast) < min_hu:
            chosen.setdefault(r["case"], set()).add(int(r["box_id"]))
    return chosen


def dark_boxes(rows: Iterable[Mapping]) -> dict[str, set[int]]:
    """The boxes whose mask holds their dark voxels (``polarity`` ``"dark"``), as ``{case: {box_id, ...}}``."""
    chosen: dict[str, set[int]] = {}
    for r in rows:
        if r["polarity"] == "dark":
            chosen.setdefault(r["case"], set()).add(int(r["box_id"]))
    return chosen


def ignored_labels(mask: np.ndarray, probability: np.ndarray, boxes: Sequence[BoxEntry],
                   band: Optional[tuple[float, float]] = None, ring: int = 0,
                   unsure: Iterable[int] = (), dark: Iterable[int] = (), dark_margin: int = 0) -> np.ndarray:
    """The labels of one case (uint8): the mask (1), :data:`IGNORE_LABEL` on the band, the ring, the unsure boxes
    and the margins of dark lesions (module docstring), 0 elsewhere.

    Args:
        mask: the case's 0/1 pseudo-mask.
        probability: the fracture probability the mask came from (same shape).
        boxes: the case's boxes.
        band: ``(low, high)`` probability band of uncertain box voxels outside the mask, or ``None``.
        ring: width in voxels of the border ring inside each box's mask (0 = none).
        unsure: box IDs of the case whose voxels are all ignored (outside the case's other boxes).
        dark: box IDs of the case whose mask holds their dark voxels.
        dark_margin: width in voxels of the ignored margin around those masks (0 = none).

    Raises:
        ValueError: if the shapes differ or ``ring`` or ``dark_margin`` is not an integer >= 0.
    """
    if mask.shape != probability.shape:
        raise ValueError(f"mask shape {mask.shape} differs from probability shape {probability.shape}")
    if isinstance(ring, bool) or not isinstance(ring, (int, np.integer)) or ring < 0:
        raise ValueError(f"ring must be an integer >= 0 (voxels), got {ring!r}")
    check_dark_margin(dark_margin)
    dark = set(dark)
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
        if dark_margin and entry.box_id in dark:
            lesion = mask[region] > 0
            inside[(inside == 0) & ndimage.binary_dilation(lesion, iterations=int(dark_margin))] = IGNORE_LABEL
    unsure = set(unsure)
    if unsure:
        doubt = np.zeros(mask.shape, dtype=bool)
        for entry in boxes:
            if entry.box_id in unsure:
                doubt[entry.region] = True
        for entry in boxes:
            if entry.box_id not in unsure:
                doubt[entry.region] = False
        labels[doubt] = IGNORE_LABEL
    return labels
