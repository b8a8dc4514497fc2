"""Split a case into per-vertebra crops: one case per vertebra, with neighbouring vertebrae as context.

For every vertebra label present in a case's vertebra map, the crop is the voxel bounding box of that vertebra
together with ``context`` neighbouring vertebrae on each side. Neighbours are the labels *present in this map*
adjacent in label-number order (VerSe numbering), except that T13 (label 28) is placed between T12 (19) and
L1 (20) where it anatomically belongs. The image, GT mask and vertebra map are cropped with
``sitk.RegionOfInterest``, which keeps spacing and direction and moves the origin to the crop's first voxel, so
every crop stays in the same physical place. Boxes are shifted into the crop, clipped to it and dropped when
nothing of them is left.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.box_geometry import clip_box, label_extents
from nnunet_fracture.dataset_conversion.case import CaseRecord
from nnunet_fracture.dataset_conversion.case_checks import describe, label_array
from nnunet_fracture.dataset_conversion.vertebra_labels import LABEL_NAMES


def crop_suffix(label: int) -> str:
    """The case-id suffix of a vertebra crop: the VerSe name (``20 -> "L1"``), else the label number."""
    return LABEL_NAMES.get(int(label), str(int(label)))


def anatomical_order(label: int) -> float:
    """Sort key for vertebra labels: label number, with T13 (28) between T12 (19) and L1 (20)."""
    return 19.5 if int(label) == 28 else float(label)


def crop_regions(vertebrae: np.ndarray, context: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """One ``(label, lo, hi)`` crop per vertebra: the bounding box of it and ``context`` neighbours per side.

    Args:
        vertebrae: vertebra label array ``[k, j, i]``.
        context: number of neighbouring vertebrae kept on each side (>= 0).

    Returns:
        Crops in anatomical order; ``lo``/``hi`` are inclusive ITK indices (i, j, k).
    """
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    boxes = {label: (np.array(lo), np.array(hi)) for label, (lo, hi)
             in label_extents(sitk.GetImageFromArray(vertebrae.astype(np.uint32))).items()}
    order = sorted(boxes, key=anatomical_order)
    regions = []
    for pos, label in enumerate(order):
        group = order[max(0, pos - context): pos + context + 1]
        lo = np.min([boxes[g][0] for g in group], axis=0)
        hi = np.max([boxes[g][1] for g in group], axis=0)
        regions.append((label, lo, hi))
    return regions


def _crop(image: Optional[sitk.Image], lo: np.ndarray, hi: np.ndarray) -> Optional[sitk.Image]:
    if image is None:
        return None
    size = [int(h - l + 1) for l, h in zip(lo, hi)]
    return sitk.RegionOfInterest(image, size, [int(v) for v in lo])


def crop_case(case: CaseRecord, context: int = 1) -> Iterator[CaseRecord]:
    """Yield one cropped case ``<case_id>_<VERTEBRA>`` per vertebra present in ``case.vertebrae``.

    Args:
        case: a validated case (mask and vertebra map on the CT grid) that has a vertebra map.
        context: neighbouring vertebrae kept on each side of each vertebra.

    Raises:
        ValueError: if the case has no vertebra map or the map holds no vertebra.
    """
    where = describe(case.case_id, case.source)
    if case.vertebrae is None:
        raise ValueError(f"{where}: per-vertebra crops need a vertebra label map, but this case has none. Fix: "
                         f"add vertebrae/{case.case_id}.nii.gz or convert without --crop-vertebrae.")
    array = label_array(case.vertebrae, "vertebra map", case.case_id, case.source)
    regions = crop_regions(array, context)
    if not regions:
        raise ValueError(f"{where}: the vertebra map holds no vertebra (only background). Fix: supply a "
                         f"labelled vertebra map or convert without --crop-vertebrae.")
    for label, lo, hi in regions:
        size = hi - lo + 1
        boxes = [b for b in (clip_box(box, size, offset=lo) for box in case.boxes) if b is not None]
        yield CaseRecord(
            case_id=f"{case.case_id}_{crop_suffix(label)}",
            image=_crop(case.image, lo, hi),
            boxes=boxes,
            mask=_crop(case.mask, lo, hi),
            vertebrae=_crop(case.vertebrae, lo, hi),
            source=f"{case.source or case.case_id} [vertebra {crop_suffix(label)}, label {label}, "
                   f"voxels {tuple(int(v) for v in lo)}-{tuple(int(v) for v in hi)}]",
        )
