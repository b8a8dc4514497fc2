"""Read the fracture probability from the ``.npz`` files ``nnUNetv2_predict --save_probabilities`` writes.

nnU-Net stores ``probabilities`` with one leading channel per output of the network, in the array order of
the original image (z, y, x for SimpleITK images):

- a label-based dataset (``labels: {background: 0, fracture: 1}``, e.g. ``--weak mask``) gives two softmax
  channels, and the fracture probability is channel 1;
- a region-based dataset (``labels: {background: 0, fracture: [1, 2, ...]}``, what ``convert --weak box`` and
  ``--weak slice`` write, one label value per box) gives one sigmoid channel, the fracture region.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: float32 softmax/sigmoid outputs may overshoot [0, 1] by rounding; anything beyond this is an error.
RANGE_TOLERANCE = 1e-6


def fracture_channel(num_channels: int, npz_file: Path, case: str) -> int:
    """Index of the fracture channel in an nnU-Net probability array with ``num_channels`` channels."""
    if num_channels == 1:
        return 0
    if num_channels == 2:
        return 1
    raise ValueError(f"case {case}: probabilities in {npz_file} have {num_channels} channels; expected 1 (a "
                     f"region-based fracture model) or 2 (background, fracture). Fix: predict with a model trained "
                     f"on a dataset written by `nnunet-fracture convert`.")


def load_fracture_probability(npz_file: Path, case: str, shape: tuple[int, ...]) -> np.ndarray:
    """Fracture probability as float32, checked for shape and range (an overshoot of up to
    :data:`RANGE_TOLERANCE` is clipped to [0, 1]).

    Raises:
        ValueError: naming the file and case, when the array is missing, has the wrong shape or channel count,
            or holds values outside [0, 1] or non-finite values.
    """
    npz_file = Path(npz_file)
    with np.load(npz_file) as data:
        if "probabilities" not in data:
            raise ValueError(f"case {case}: {npz_file} has no 'probabilities' array; it should come from "
                             f"nnUNetv2_predict --save_probabilities")
        probabilities = data["probabilities"]
    if probabilities.ndim != len(shape) + 1 or tuple(probabilities.shape[1:]) != tuple(shape):
        raise ValueError(f"case {case}: probabilities in {npz_file} have shape {probabilities.shape}, expected "
                         f"(channels, {', '.join(map(str, shape))})")
    fracture = probabilities[fracture_channel(probabilities.shape[0], npz_file, case)].astype(np.float32)
    if not np.isfinite(fracture).all():
        raise ValueError(f"case {case}: probabilities in {npz_file} contain NaN or infinite values")
    low, high = float(fracture.min()), float(fracture.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(f"case {case}: probabilities in {npz_file} span [{low}, {high}], outside [0, 1]")
    return np.clip(fracture, 0.0, 1.0)
