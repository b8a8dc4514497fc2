"""Dark lesions: a box whose fracture is darker than its bone gets the dark voxels as its pseudo-mask.

A fracture shows on CT either as bone denser than the bone around it (the sclerotic condensation band of a wedge or
compression fracture) or as a void in it: an intravertebral cleft (Kümmell's disease) holds gas or fluid, tens to
hundreds of HU below cancellous bone. A weak model trained on boxes learns *where* a fracture is, and in a dense
fracture its confident voxels are the fracture. In a cleft box they are not: on the quality bench's phantom the
weak model puts a blob of healthy cancellous bone there (its pseudo-masks of clefts scored Dice 0.19 against the
truth, its P >= 0.5 0.13), and ``--ignore-faint-boxes`` / ``--ignore-unsure-boxes`` could only leave those boxes out
of a round: the round's model never saw a cleft (cleft recall 0 on three seeds).

The model still knows which way the box's lesion goes. Split the box's bone (the box inside its vertebra,
:mod:`~nnunet_fracture.inference.vertebra_interior`) at its Otsu HU threshold into a dark and a bright part
(:func:`box_polarity`); the weak model's mean P is higher on the dark part in a cleft box. On the bench's training
cases of three seeds (the weak solid-bags model, 1.5 mm interior) that held in 33 of 33 cleft boxes and in 2 of
64 band boxes. Where it holds, the pseudo-mask is the bone more than ``below_hu`` under the median HU of the box's
bone (:func:`dark_lesion_mask`). With ``below_hu = 100`` the cleft masks scored Dice 0.75 / 0.69 / 0.65 against
the truth on the three seeds' training cases (75: 0.79 / 0.77 / 0.69, but more of them fall under
``--ignore-faint-boxes 100``; 150: 0.58 / 0.43 / 0.37). These settings were chosen on training cases only; the
bench's held-out cases judge them.

Only the bone is compared: outside the vertebra a box holds disc, fat and muscle, darker than any bone, so the
rule needs the vertebra maps (``--inside-vertebra``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_otsu


def check_below_hu(below_hu: object) -> float:
    """``below_hu`` as a float >= 0 (0: the rule is off).

    Raises:
        ValueError: otherwise.
    """
    ok = isinstance(below_hu, (int, float)) and not isinstance(below_hu, bool) and math.isfinite(below_hu) \
        and below_hu >= 0
    if not ok:
        raise ValueError(f"--dark-lesions must be a HU difference >= 0 (0: off), got {below_hu!r}")
    return float(below_hu)


@dataclass(frozen=True)
class Polarity:
    """Which part of a box's bone the weak model prefers.

    ``dark`` is true when the mean P over the voxels at or below the Otsu HU threshold (``split_hu``) exceeds the
    mean P over those above it. A bone of one HU has no split: ``dark`` false, means NaN.
    """

    dark: bool
    split_hu: float
    p_dark: float
    p_bright: float


def box_polarity(hu: np.ndarray, probability: np.ndarray, bone: np.ndarray) -> Polarity:
    """The :class:`Polarity` of one box from its CT (HU), the weak model's P and its bone voxels (one shape).

    Raises:
        ValueError: if the shapes differ.
    """
    if not hu.shape == probability.shape == bone.shape:
        raise ValueError(f"hu {hu.shape}, probability {probability.shape} and bone {bone.shape} must have one shape")
    bone = np.asarray(bone, dtype=bool)
    values = hu[bone].astype(np.float64)
    if values.size == 0 or values.min() == values.max():
        return Polarity(False, math.nan, math.nan, math.nan)
    split = float(threshold_otsu(values))
    p = probability[bone].astype(np.float64)
    dark_part = values <= split
    p_dark, p_bright = float(p[dark_part].mean()), float(p[~dark_part].mean())
    return Polarity(p_dark > p_bright, split, p_dark, p_bright)


def dark_lesion_mask(hu: np.ndarray, bone: np.ndarray, below_hu: float) -> np.ndarray:
    """The ``bone`` voxels whose HU lies more than ``below_hu`` under the median HU of ``bone`` (boolean array).

    Raises:
        ValueError: if the shapes differ or ``below_hu`` is not a number >= 0.
    """
    if hu.shape != bone.shape:
        raise ValueError(f"hu {hu.shape} and bone {bone.shape} must have one shape")
    below_hu = check_below_hu(below_hu)
    bone = np.asarray(bone, dtype=bool)
    if not bone.any():
        return bone.copy()
    return bone & (hu < np.median(hu[bone]) - below_hu)
