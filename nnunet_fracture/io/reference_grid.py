"""Arrays written on the grid of a reference image: the one place that wraps a ``(z, y, x)`` numpy array as a
SimpleITK image with the reference's size, spacing, origin and direction."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def array_to_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a ``[k, j, i]`` numpy array as a SimpleITK image with ``reference``'s geometry.

    Raises:
        ValueError: if the array's shape is not the reference's size in array order (quoting both).
    """
    expected = tuple(reversed(reference.GetSize()))
    if tuple(np.shape(array)[:len(expected)]) != expected:
        raise ValueError(f"an array of shape {tuple(np.shape(array))} does not fit the reference grid of shape "
                         f"{expected} (z, y, x)")
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image
