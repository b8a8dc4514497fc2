"""Fold fusion and uncertainty on tiny hand-computed arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnunet_fracture.inference.prediction_folders import binary_entropy_bits, fold_mean_and_std


def test_fold_mean_and_std_by_hand():
    folds = [np.array([0.2, 0.8, 0.0, 1.0]), np.array([0.6, 0.8, 0.0, 0.0]), np.array([0.4, 0.8, 0.3, 0.5])]
    mean, std, count = fold_mean_and_std(iter(folds))
    assert count == 3 and mean.dtype == np.float32 and std.dtype == np.float32
    assert np.allclose(mean, [0.4, 0.8, 0.1, 0.5], atol=1e-6)
    # population std: sqrt(((-0.2)^2 + 0.2^2 + 0) / 3), 0, sqrt((0.01 + 0.01 + 0.04) / 3), sqrt(0.5 / 3)
    assert np.allclose(std, [math.sqrt(0.08 / 3), 0.0, math.sqrt(0.06 / 3), math.sqrt(0.5 / 3)], atol=1e-6)


def test_fold_mean_and_std_errors():
    with pytest.raises(ValueError, match="no arrays"):
        fold_mean_and_std([])
    with pytest.raises(ValueError, match="shape"):
        fold_mean_and_std([np.zeros(3), np.zeros(4)])


def test_binary_entropy_bits_by_hand():
    p = np.array([0.0, 0.1, 0.2, 0.5, 0.8, 1.0], dtype=np.float32)
    expected = [0.0, 0.4689955935892812, 0.7219280948873623, 1.0, 0.7219280948873623, 0.0]
    h = binary_entropy_bits(p)
    assert h.dtype == np.float32 and np.allclose(h, expected, atol=1e-6)
