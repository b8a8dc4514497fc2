"""Bring a map computed on nnU-Net's preprocessed grid (a VAE error map, attention coefficients) back to the grid of
the raw image, through nnU-Net's own export path: resampling, un-cropping (0 outside the crop) and transposition.

nnU-Net's export applies the label manager's inference non-linearity and returns "probabilities"; a one-region
label manager whose non-linearity is the identity makes it pass any float map through unchanged.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def _identity(x: torch.Tensor) -> torch.Tensor:  # a named function, so the label manager pickles
    return x


def passthrough_label_manager():
    """A one-region ``LabelManager`` whose inference non-linearity is the identity."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    return LabelManager({"background": 0, "map": [1, 2]}, regions_class_order=[1], inference_nonlin=_identity)


def to_image_grid(channel, properties: dict, plans_manager, configuration_manager,
                  num_threads_torch: Optional[int] = None) -> np.ndarray:
    """One map ``(1, *preprocessed shape)`` (numpy or torch) on the raw image's grid as the plans' reader read it
    (z, y, x for SimpleITK), float32; ``properties`` are the preprocessor's for that case."""
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    threads = {} if num_threads_torch is None else {"num_threads_torch": num_threads_torch}
    _, resampled = convert_predicted_logits_to_segmentation_with_correct_shape(
        channel, plans_manager, configuration_manager, passthrough_label_manager(), properties,
        return_probabilities=True, **threads)
    return np.ascontiguousarray(resampled[0], dtype=np.float32)
