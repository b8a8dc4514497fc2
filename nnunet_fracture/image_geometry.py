"""Do two images share one voxel grid? One comparison, used wherever masks, predictions and CTs meet."""
from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk

SPACING_RTOL = 1e-4
"""Relative tolerance on spacing."""
ORIGIN_ATOL_VOXELS = 1e-3
"""Origin tolerance in units of the reference's smallest voxel spacing."""
DIRECTION_ATOL = 1e-4
"""Absolute tolerance on direction-cosine entries."""


def geometry_mismatch(reference: sitk.Image, other: sitk.Image) -> Optional[tuple[str, tuple, tuple]]:
    """The first grid property in which ``other`` differs from ``reference``, or ``None`` if they agree.

    Size must match exactly; spacing, origin and direction within the module tolerances (header rounding).

    Returns:
        ``(property, other's value, reference's value)``, property one of size, spacing, origin, direction.
    """
    if tuple(other.GetSize()) != tuple(reference.GetSize()):
        return "size", tuple(other.GetSize()), tuple(reference.GetSize())
    spacing = np.array(reference.GetSpacing())
    if not np.allclose(other.GetSpacing(), spacing, rtol=SPACING_RTOL, atol=0):
        return "spacing", tuple(other.GetSpacing()), tuple(reference.GetSpacing())
    if not np.allclose(other.GetOrigin(), reference.GetOrigin(), rtol=0, atol=ORIGIN_ATOL_VOXELS * spacing.min()):
        return "origin", tuple(other.GetOrigin()), tuple(reference.GetOrigin())
    if not np.allclose(other.GetDirection(), reference.GetDirection(), rtol=0, atol=DIRECTION_ATOL):
        return "direction", tuple(other.GetDirection()), tuple(reference.GetDirection())
    return None
