"""What ``evaluate`` reads besides the predictions: ground-truth-grid checks, box-number maps (from ``boxes.json``
or a ``labelsTr`` folder) and vertebra maps, each checked against the ground truth's grid with a message that
names the case, the file and the fix."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.box_geometry import rasterise_boxes
from nnunet_fracture.dataset_conversion.case import VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import read_boxes_json
from nnunet_fracture.image_geometry import geometry_mismatch


def check_same_geometry(reference: sitk.Image, other: sitk.Image, case: str, what: str, path: Path,
                         fix: str = "predict from images with the ground truth's geometry") -> None:
    """Raise naming the case, ``what`` (and its ``path``) and ``fix`` when ``other``'s grid differs from ``reference``."""
    mismatch = geometry_mismatch(reference, other)
    if mismatch is not None:
        name, theirs, ours = mismatch
        raise ValueError(f"case {case}: {what} {path} has {name} {theirs} but the ground truth has {ours}. "
                         f"Fix: {fix}.")


class BoxNumbers:
    """Box-number maps (0 outside every box, n inside box n) per case, from ``boxes.json`` or a folder.

    ``source`` is either a raw dataset's ``boxes.json`` (``{case: [{box_id, lo, hi, ...}]}``, ``lo``/``hi``
    inclusive ITK indices i, j, k; every case must be listed, ``[]`` for a fracture-free one) or a folder of
    box-number maps ``<case>.nii.gz`` (``labelsTr`` of a ``convert --weak box`` dataset).
    """

    def __init__(self, source: Path, cases: list[str]):
        self.source = Path(source)
        self.boxes: Optional[dict] = None
        if self.source.is_file():
            table = read_boxes_json(self.source)
            missing = [c for c in cases if c not in table]
            self.boxes = table
        elif self.source.is_dir():
            refuse_mask_labels(self.source)
            missing = [c for c in cases if not (self.source / f"{c}.nii.gz").is_file()]
        else:
            raise FileNotFoundError(f"boxes {self.source} does not exist. Fix: pass a raw dataset's boxes.json or "
                                    f"its labelsTr folder of box-number maps.")
        if missing:
            where = "are not listed in" if self.boxes is not None else "have no box-number map <case>.nii.gz in"
            raise ValueError(f"{len(missing)} case(s) {where} {self.source}: {', '.join(missing[:10])}. Fix: use "
                             f"the boxes of the dataset the ground truth belongs to (a fracture-free case needs an "
                             f"empty list in boxes.json / an all-zero map).")

    def load(self, case: str, reference: sitk.Image) -> np.ndarray:
        """The case's box-number map in array order (z, y, x), on ``reference``'s grid."""
        if self.boxes is not None:
            boxes = []
            for n, entry in enumerate(self.boxes[case], start=1):
                try:
                    boxes.append(VoxelBox(tuple(int(v) for v in entry["lo"]), tuple(int(v) for v in entry["hi"])))
                except (TypeError, KeyError, ValueError):
                    raise ValueError(f"case {case}: box {n} in {self.source} is {entry!r}; each box needs 'lo' and "
                                     f"'hi', three integer voxel indices (i, j, k) each") from None
            try:
                return rasterise_boxes(boxes, reference.GetSize(), "box")
            except ValueError as e:
                raise ValueError(f"case {case}: {self.source}: {e}. Fix: use the boxes.json written with the "
                                 f"images the ground truth was drawn on.") from None
        path = self.source / f"{case}.nii.gz"
        image = sitk.ReadImage(str(path))
        check_same_geometry(reference, image, case, "box-number map", path,
                             fix="use the labelsTr folder of the dataset the ground truth belongs to")
        numbers = sitk.GetArrayFromImage(image)
        if numbers.dtype.kind not in "iu" or (numbers.size and numbers.min() < 0):
            raise ValueError(f"case {case}: box-number map {path} must hold integers >= 0 (0 outside every box, "
                             f"n inside box n), got {numbers.dtype} with minimum {numbers.min()}")
        return numbers


def refuse_mask_labels(folder: Path) -> None:
    """A ``labelsTr`` next to a ``dataset.json`` of a ``--weak mask`` dataset holds masks, not box numbers."""
    dataset_json = folder.parent / "dataset.json"
    try:
        weak = json.loads(dataset_json.read_text()).get("nnunet_fracture", {}).get("weak")
    except (OSError, ValueError, AttributeError):
        return
    if weak == "mask":
        raise ValueError(f"{folder} belongs to a '--weak mask' dataset ({dataset_json}): its labels are ground-truth "
                         f"masks, not box numbers. Fix: pass that dataset's boxes.json ({folder.parent / 'boxes.json'})"
                         f" instead.")


def read_vertebrae(folder: Path, case: str, reference: sitk.Image) -> np.ndarray:
    """``folder/<case>.nii.gz`` as an integer label array (uint8 when the labels fit), on ``reference``'s grid."""
    path = Path(folder) / f"{case}.nii.gz"
    image = sitk.ReadImage(str(path))
    check_same_geometry(reference, image, case, "vertebra map", path,
                         fix="use the vertebra maps of the same images (vertebraeTr/ of the converted dataset), or "
                             "resample them onto the ground truth's grid with nearest-neighbour interpolation")
    labels = sitk.GetArrayViewFromImage(image)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"case {case}: vertebra map {path} holds {labels.dtype} values; it must be an integer "
                         f"label map (VerSe numbering)")
    if labels.size and labels.min() < 0:
        raise ValueError(f"case {case}: vertebra map {path} holds negative labels ({labels.min()})")
    # VerSe numbers fit a byte: keep 1 byte per voxel instead of the file's (often 2-byte) type
    return labels.astype(np.uint8) if labels.size and labels.max() <= 255 else labels.copy()
