"""One case's volumes for the figures: CT, fracture probability, boxes, vertebrae and ground truth.

Everything is checked against the CT's voxel grid (:func:`nnunet_fracture.image_geometry.geometry_mismatch`) and
then turned into one display orientation, ``sitk.DICOMOrient(image, "LPS")``: array axes (z, y, x) run towards
patient superior, posterior and left. Views drawn from these arrays therefore follow the radiological
convention whatever the scanner's direction matrix (axial: anterior up, patient right on the left; coronal and
sagittal: head up), and world coordinates (mm, LPS as SimpleITK reports them) are unchanged by the reorientation.

Where the files come from (nnU-Net and ``nnunet-fracture convert`` layouts):

- ``IMAGES/<case>_0000.<ending>``: the CT (first channel);
- ``PRED/<case>.npz``: ``nnUNetv2_predict --save_probabilities`` output, read with
  :func:`~nnunet_fracture.io.probability_files.load_fracture_probability`; without it, the segmentation
  ``PRED/<case>.<ending>`` (fracture = label > 0) stands in as a 0/1 probability;
- ``boxes.json``: ``{case: [{box_id, lo, hi, ...}]}``, ``lo``/``hi`` inclusive ITK indices (i, j, k) of the CT;
- ``VERTEBRAE/<case>.<ending>`` and ``GROUND_TRUTH/<case>.<ending>``: optional per case (a converted dataset
  has them only where the source had them).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.box_geometry import box_problem, voxel_to_world_box, world_to_voxel_box
from nnunet_fracture.dataset_conversion.case import VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import read_boxes_json as read_boxes_table
from nnunet_fracture.image_geometry import geometry_mismatch
from nnunet_fracture.io.probability_files import load_fracture_probability
from nnunet_fracture.io.image_files import IMAGE_ENDINGS

"""File endings tried, in this order, for CTs, segmentations, vertebra maps and ground-truth masks."""
DISPLAY_ORIENTATION = "LPS"
"""``sitk.DICOMOrient`` code of the display arrays: identity direction, axes towards L, P, S."""


@dataclass(frozen=True)
class DisplayBox:
    """A fracture box on the display grid: inclusive array indices ``lo_zyx .. hi_zyx``; ``lo_ijk``/``hi_ijk``
    are its inclusive ITK indices on the CT's own grid, as in ``boxes.json``."""

    number: int
    lo_zyx: tuple[int, int, int]
    hi_zyx: tuple[int, int, int]
    lo_ijk: tuple[int, int, int]
    hi_ijk: tuple[int, int, int]

    @property
    def centre_zyx(self) -> tuple[int, int, int]:
        """The voxel at the box's centre (rounded down)."""
        return tuple((lo + hi) // 2 for lo, hi in zip(self.lo_zyx, self.hi_zyx))  # type: ignore[return-value]


@dataclass
class CaseVolumes:
    """A case's arrays on one display grid (see the module docstring); every array is indexed (z, y, x)."""

    case: str
    ct: np.ndarray
    probability: np.ndarray
    probability_source: str
    grid: sitk.Image
    boxes: list[DisplayBox]
    vertebrae: Optional[np.ndarray] = None
    ground_truth: Optional[np.ndarray] = None

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel spacing in mm, array order."""
        return tuple(float(s) for s in reversed(self.grid.GetSpacing()))  # type: ignore[return-value]

    def max_voxel(self) -> tuple[int, int, int]:
        """The (z, y, x) voxel of highest probability (the first one on ties; the centre if all are zero)."""
        if not self.probability.any():
            return tuple(s // 2 for s in self.probability.shape)  # type: ignore[return-value]
        peak = np.unravel_index(np.argmax(self.probability), self.probability.shape)
        return tuple(int(i) for i in peak)  # type: ignore[return-value]


def find_image(folder: Path, stem: str) -> Optional[Path]:
    """``folder/<stem><ending>`` for the first of :data:`IMAGE_ENDINGS` that exists, else ``None``."""
    for ending in IMAGE_ENDINGS:
        path = Path(folder) / f"{stem}{ending}"
        if path.is_file():
            return path
    return None


def _stem(path: Path) -> Optional[str]:
    for ending in IMAGE_ENDINGS + (".npz",):
        if path.name.endswith(ending):
            return path.name[: -len(ending)]
    return None


def prediction_cases(predictions: Path) -> list[str]:
    """Cases of an nnU-Net prediction folder: every ``<case>.npz`` or ``<case>.<ending>``, sorted."""
    predictions = Path(predictions)
    if not predictions.is_dir():
        raise FileNotFoundError(f"prediction folder {predictions} does not exist")
    cases = {s for p in predictions.iterdir() if p.is_file() and (s := _stem(p)) is not None}
    if not cases:
        raise FileNotFoundError(f"no predictions (<case>.npz from nnUNetv2_predict --save_probabilities, or "
                                f"<case>.nii.gz) in {predictions}")
    return sorted(cases)


def read_boxes_json(path: Path) -> dict[str, list[dict]]:
    """Read a ``boxes.json`` (written by ``nnunet-fracture convert``) and check its structure.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file (and case), when it is not JSON or an entry lacks integer ``lo``/``hi``.
    """
    path = Path(path)
    boxes = read_boxes_table(path)
    for case, entries in boxes.items():
        for n, entry in enumerate(entries, start=1):
            ok = isinstance(entry, dict) and all(
                isinstance(entry.get(k), list) and len(entry[k]) == 3 and all(isinstance(v, int) for v in entry[k])
                for k in ("lo", "hi"))
            if not ok:
                raise ValueError(f"case {case}: box {n} in {path} needs integer lists 'lo' and 'hi' of length 3 "
                                 f"(inclusive ITK indices i, j, k), got {entry!r}")
    return boxes


def to_display(image: sitk.Image) -> sitk.Image:
    """The image resampled without interpolation (axes permuted and flipped) onto the display orientation."""
    return sitk.DICOMOrient(image, DISPLAY_ORIENTATION)


def display_boxes(entries: Sequence[dict], original: sitk.Image, display: sitk.Image, case: str,
                  boxes_file: Path) -> list[DisplayBox]:
    """Map ``boxes.json`` entries of one case from the CT's index grid onto the display grid.

    Raises:
        ValueError: naming case and file, when a box has ``lo > hi`` or reaches outside the CT.
    """
    boxes = []
    for n, entry in enumerate(entries, start=1):
        number = int(entry.get("box_id", n))
        box = VoxelBox(tuple(entry["lo"]), tuple(entry["hi"]))  # type: ignore[arg-type]
        problem = box_problem(box, original.GetSize())
        if problem:
            raise ValueError(f"case {case}: box {number} in {boxes_file}: {problem}. Fix: use the boxes.json written "
                             f"together with these images.")
        mapped = world_to_voxel_box(display, *voxel_to_world_box(original, box))
        assert mapped is not None  # the corner voxel centres themselves lie inside
        lo_zyx, hi_zyx = tuple(reversed(mapped.lo)), tuple(reversed(mapped.hi))
        boxes.append(DisplayBox(number, lo_zyx, hi_zyx, box.lo, box.hi))  # type: ignore[arg-type]
    return boxes


def _check_grid(reference: sitk.Image, other: sitk.Image, case: str, what: str, path: Path,
                reference_file: Path) -> None:
    mismatch = geometry_mismatch(reference, other)
    if mismatch is not None:
        name, theirs, ours = mismatch
        raise ValueError(f"case {case}: {what} {path} has {name} {theirs} but the CT {reference_file} has {ours}. "
                         f"Fix: use files on the CT's voxel grid (predict from these images; take masks from the same "
                         f"converted dataset).")


def _read_optional(folder: Optional[Path], case: str, ct: sitk.Image, ct_file: Path,
                   what: str) -> Optional[np.ndarray]:
    if folder is None:
        return None
    path = find_image(folder, case)
    if path is None:
        return None
    image = sitk.ReadImage(str(path))
    _check_grid(ct, image, case, what, path, ct_file)
    return sitk.GetArrayFromImage(to_display(image))


def load_case(case: str, images: Path, predictions: Path, boxes: Optional[dict[str, list[dict]]] = None,
              boxes_file: Optional[Path] = None, vertebrae: Optional[Path] = None,
              ground_truth: Optional[Path] = None) -> CaseVolumes:
    """Read, check and reorient one case (see the module docstring for the file layout).

    Args:
        case: case identifier.
        images: folder with ``<case>_0000.<ending>``.
        predictions: nnU-Net prediction folder.
        boxes: the parsed ``boxes.json`` (:func:`read_boxes_json`), or ``None``; a case not listed has no boxes.
        boxes_file: where ``boxes`` came from, for messages.
        vertebrae: optional folder of vertebra label maps ``<case>.<ending>`` (a missing case file is skipped).
        ground_truth: optional folder of ground-truth fracture masks (a missing case file is skipped).

    Raises:
        FileNotFoundError: the CT or the case's prediction is missing.
        ValueError: a file on another voxel grid, probabilities of the wrong shape or outside [0, 1], bad boxes.
    """
    ct_file = find_image(images, f"{case}_0000")
    if ct_file is None:
        raise FileNotFoundError(f"case {case}: no CT {Path(images) / (case + '_0000.nii.gz')} (endings tried: "
                                f"{', '.join(IMAGE_ENDINGS)}). Fix: point --images at the folder nnUNetv2_predict read "
                                f"(or the dataset's imagesTr), or leave the case out with --cases.")
    ct_image = sitk.ReadImage(str(ct_file))
    if ct_image.GetDimension() != 3 or ct_image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"case {case}: CT {ct_file} must be a 3D single-channel image")
    display = to_display(ct_image)
    shape = tuple(reversed(ct_image.GetSize()))

    segmentation_file = find_image(predictions, case)
    if segmentation_file is not None:
        segmentation = sitk.ReadImage(str(segmentation_file))
        _check_grid(ct_image, segmentation, case, "prediction", segmentation_file, ct_file)
    npz = Path(predictions) / f"{case}.npz"
    if npz.is_file():
        probability = load_fracture_probability(npz, case, shape)
        source = f"probabilities {npz.name}"
    elif segmentation_file is not None:
        probability = (sitk.GetArrayFromImage(segmentation) > 0).astype(np.float32)
        source = f"segmentation {segmentation_file.name} (no .npz: predict with --save_probabilities for a heat map)"
    else:
        raise FileNotFoundError(f"case {case}: no prediction {npz} (or {case}.nii.gz) in {predictions}. Fix: predict "
                                f"this case, or leave it out with --cases.")
    probability_image = sitk.GetImageFromArray(probability)
    probability_image.CopyInformation(ct_image)

    entries = (boxes or {}).get(case, [])
    return CaseVolumes(
        case=case,
        ct=sitk.GetArrayFromImage(display),
        probability=sitk.GetArrayFromImage(to_display(probability_image)),
        probability_source=source,
        grid=display,
        boxes=display_boxes(entries, ct_image, display, case, Path(boxes_file or "boxes.json")),
        vertebrae=_read_optional(vertebrae, case, ct_image, ct_file, "vertebra map"),
        ground_truth=_read_optional(ground_truth, case, ct_image, ct_file, "ground-truth mask"),
    )
