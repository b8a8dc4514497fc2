"""Validation of one :class:`CaseRecord` before it is written: every check raises with the case, file and fix.

:func:`validate_case` is what :func:`~nnunet_fracture.dataset_conversion.raw_dataset.write_raw_dataset` runs on
every case, whatever reader produced it; the smaller helpers are public so readers can fail early with the
same messages.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.box_geometry import box_problem
from nnunet_fracture.dataset_conversion.case import CASE_ID_PATTERN, CaseRecord
from nnunet_fracture.image_geometry import geometry_mismatch

log = logging.getLogger(__name__)
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""nnU-Net reads every CT as float32; a larger magnitude becomes infinite there."""


def describe(case_id: str, source: str = "") -> str:
    """``case 'x' (from /path)`` - the prefix of every error message about a case."""
    return f"case {case_id!r}" + (f" (from {source})" if source else "")


def check_case_id(case_id: object, source: str = "") -> str:
    """Return ``case_id`` if it is a plain name (letters, digits, ``_``, ``-``), else raise ``ValueError``."""
    if not isinstance(case_id, str) or not CASE_ID_PATTERN.match(case_id):
        raise ValueError(
            f"{describe(str(case_id), source)}: case id {case_id!r} is not a plain name. Case ids become file "
            f"names, so they may contain only letters, digits, '_' and '-'. Fix: rename the case (its files "
            f"and its rows in the box table)."
        )
    return case_id


def check_image(image: sitk.Image, case_id: str, source: str = "") -> None:
    """Raise ``ValueError`` unless ``image`` is a 3D scalar image without NaN, infinite or beyond-float32 voxels."""
    where = describe(case_id, source)
    if not isinstance(image, sitk.Image):
        raise ValueError(f"{where}: image is a {type(image).__name__}, expected a SimpleITK image")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{where}: the CT must be a 3D single-channel image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel. Fix: export one 3D volume per case."
        )
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        array = sitk.GetArrayViewFromImage(image)
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise ValueError(
                f"{where}: the CT has {bad} NaN or infinite voxel(s). nnU-Net cannot train on them. Fix: replace "
                f"them with a real value (for example -1024 HU, air) before converting."
            )
        huge = int(np.count_nonzero(np.abs(array) > FLOAT32_MAX)) if array.dtype == np.float64 else 0
        if huge:
            raise ValueError(
                f"{where}: the CT has {huge} voxel(s) beyond the float32 range (|value| > {FLOAT32_MAX:.4g}, e.g. "
                f"{float(array.flat[np.argmax(np.abs(array))]):.4g}); nnU-Net reads CTs as float32, where they become "
                f"infinite. Fix: replace them with a real value in HU (for example -1024, air) before converting."
            )


def read_image(path: Path, what: str, case_id: str) -> sitk.Image:
    """Read one image file with SimpleITK; an unreadable file raises ``ValueError`` naming the case and file."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ValueError(f"{describe(case_id, str(path))}: cannot read the {what}: {' '.join(str(e).split())[:300]}. "
                         f"Fix: re-export the file as NIfTI, NRRD or MHA.") from e


def _nifti_non_finite(path: Path) -> int:
    """Number of NaN or infinite voxels stored in a float NIfTI file (0 for other files and integer data).

    SimpleITK's NIfTI reader (nifti1_io) silently replaces them by 0, so they are counted in the file itself.
    """
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return 0
    import nibabel  # a dependency of nnunetv2

    try:
        nifti = nibabel.load(str(path))
        if not np.issubdtype(nifti.get_data_dtype(), np.floating):
            return 0
        raw = np.asanyarray(nifti.dataobj.get_unscaled())
    except Exception as e:  # SimpleITK read the file; a nibabel quirk must not block it
        log.warning("%s: could not scan the NIfTI data for NaN voxels (%s); not checked", path, e)
        return 0
    return int(np.count_nonzero(~np.isfinite(raw)))


def read_ct(path: Path, case_id: str) -> sitk.Image:
    """Read a case's CT and check it before anything else of the case is used: 3D first, then (for a float
    NIfTI) the voxels as stored, then :func:`check_image` (single channel, finite, within float32 range).

    Raises:
        ValueError: one line naming the case, the file and the fix.
    """
    path = Path(path)
    image = read_image(path, "CT image", case_id)
    if image.GetDimension() != 3:
        raise ValueError(
            f"case {case_id!r}: CT {path} has {image.GetDimension()} dimensions (size {tuple(image.GetSize())}); "
            f"the converter needs 3D CT volumes. Fix: export the CT as one 3D volume (a 2D slice cannot be "
            f"converted; split a 4D series into one 3D file per time point or phase and give each its own case).")
    bad = _nifti_non_finite(path)
    if bad:
        raise ValueError(
            f"{describe(case_id, str(path))}: the CT stores {bad} NaN or infinite voxel(s) (SimpleITK would read them "
            f"as 0). Fix: replace them with a real value (for example -1024 HU, air) before converting.")
    check_image(image, case_id, str(path))
    return image


def check_same_geometry(image: sitk.Image, other: sitk.Image, what: str, case_id: str,
                        source: str = "") -> sitk.Image:
    """Check that ``other`` (a mask or vertebra map) lies on ``image``'s voxel grid.

    Size must match exactly; spacing, origin and direction within the tolerances of
    :mod:`nnunet_fracture.image_geometry`. ``other`` is returned with ``image``'s geometry copied onto it, so
    tiny header rounding differences disappear.

    Raises:
        ValueError: naming the case, ``what`` and the mismatching property.
    """
    where = describe(case_id, source)
    if not isinstance(other, sitk.Image) or other.GetDimension() != 3 or other.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{where}: the {what} must be a 3D single-channel SimpleITK image")
    mismatch = geometry_mismatch(image, other)
    if mismatch is not None:
        name, theirs, ours = mismatch
        raise ValueError(f"{where}: the {what} has {name} {theirs} but the CT has {name} {ours}. Fix: resample "
                         f"the {what} onto the CT grid (e.g. sitk.Resample({what.replace(' ', '_')}, ct, "
                         f"sitk.Transform(), sitk.sitkNearestNeighbor)) or supply the {what} that belongs to "
                         f"this CT.")
    aligned = sitk.Image(other)
    aligned.CopyInformation(image)
    return aligned


def label_array(image: sitk.Image, what: str, case_id: str, source: str = "") -> np.ndarray:
    """Return a label map's voxels as a non-negative integer numpy array ``[k, j, i]``.

    Raises:
        ValueError: if a voxel is negative, not finite or not a whole number.
    """
    array = sitk.GetArrayFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"{describe(case_id, source)}: the {what} holds non-integer or NaN values; a label "
                             f"map must hold whole numbers. Fix: save it with an integer pixel type.")
        array = array.astype(np.int64)
    if array.size and int(array.min()) < 0:
        raise ValueError(f"{describe(case_id, source)}: the {what} holds negative labels. Fix: use labels >= 0.")
    return array


def validate_case(case: CaseRecord) -> CaseRecord:
    """Run every check on one case and return it with its mask / vertebra map snapped to the CT geometry.

    Checks: plain case id, 3D finite CT within float32 range, every box valid and inside the image, mask and
    vertebra map on the CT grid.

    Raises:
        ValueError: with the case id, its source and the fix.
    """
    if not isinstance(case, CaseRecord):
        raise ValueError(f"expected a CaseRecord, got {type(case).__name__}")
    check_case_id(case.case_id, case.source)
    check_image(case.image, case.case_id, case.source)
    for n, box in enumerate(case.boxes, start=1):
        problem = box_problem(box, case.image.GetSize())
        if problem:
            raise ValueError(f"{describe(case.case_id, case.source)}: box {n} ({box.label or 'no label'}): "
                             f"{problem}. Fix: correct or clip the box.")
    mask: Optional[sitk.Image] = None
    vertebrae: Optional[sitk.Image] = None
    if case.mask is not None:
        mask = check_same_geometry(case.image, case.mask, "mask", case.case_id, case.source)
    if case.vertebrae is not None:
        vertebrae = check_same_geometry(case.image, case.vertebrae, "vertebra map", case.case_id, case.source)
    return CaseRecord(case.case_id, case.image, list(case.boxes), mask, vertebrae, case.source)
