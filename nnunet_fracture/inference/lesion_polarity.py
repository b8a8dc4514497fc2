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

That core is the cleft's darkest middle: a 1-3 mm cleft, blurred by the scanner, reaches 100 HU under the bone only
along its centre, and its truth (the cleft and 0.5 mm either side) is about twice as thick (pooled over the cleft
boxes of the three seeds' training cases, precision 0.87 / 0.91 / 0.83, recall 0.53 / 0.46 / 0.42). ``grow_hu``
grows the core through the bone more than ``grow_hu`` under the median that touches it (hysteresis thresholding,
scikit-image's ``apply_hysteresis_threshold``): isolated dark voxels of noise stay out, the cleft's blurred flanks
come in. On the same training cases, pooled Dice of the cleft masks (per seed; 3 seeds):
core only 0.662 / 0.610 / 0.556, grown to 50 HU 0.641 / 0.694 / 0.601, to 75 HU 0.698 / 0.694 / 0.628, to 25 HU
0.498 / 0.536 / 0.497 - 75 was chosen from these (``benchmarks/cleft_masks.py``).

Only the bone is compared: outside the vertebra a box holds disc, fat and muscle, darker than any bone, so the
rule needs the vertebra maps (``--inside-vertebra``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.filters import apply_hysteresis_threshold, threshold_otsu


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


def check_grow_hu(grow_hu: object, below_hu: float) -> float:
    """``grow_hu`` as a float: 0 (the core only), or a HU difference between 0 and ``below_hu`` (exclusive).

    Raises:
        ValueError: otherwise, or when set while ``below_hu`` is 0 (no core to grow).
    """
    ok = isinstance(grow_hu, (int, float)) and not isinstance(grow_hu, bool) and math.isfinite(grow_hu) \
        and grow_hu >= 0
    if not ok:
        raise ValueError(f"--dark-grow must be a HU difference >= 0 (0: off), got {grow_hu!r}")
    if grow_hu and not below_hu:
        raise ValueError("--dark-grow grows the dark lesions that --dark-lesions finds. Fix: add --dark-lesions HU "
                         "(e.g. 100), or leave --dark-grow out.")
    if grow_hu and grow_hu >= below_hu:
        raise ValueError(f"--dark-grow {grow_hu:g} must be less than --dark-lesions {below_hu:g}: the mask grows "
                         f"from the darkest voxels into less dark ones (e.g. --dark-lesions 100 --dark-grow 75)")
    return float(grow_hu)


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


def dark_lesion_mask(hu: np.ndarray, bone: np.ndarray, below_hu: float, grow_hu: float = 0.0) -> np.ndarray:
    """The ``bone`` voxels whose HU lies more than ``below_hu`` under the median HU of ``bone`` (boolean array), grown
    (``grow_hu`` > 0) through the face-connected bone voxels more than ``grow_hu`` under that median.

    Raises:
        ValueError: if the shapes differ, ``below_hu`` is not a number >= 0 or ``grow_hu`` not one below it.
    """
    if hu.shape != bone.shape:
        raise ValueError(f"hu {hu.shape} and bone {bone.shape} must have one shape")
    below_hu = check_below_hu(below_hu)
    grow_hu = check_grow_hu(grow_hu, below_hu)
    bone = np.asarray(bone, dtype=bool)
    if not bone.any():
        return bone.copy()
    median = float(np.median(hu[bone]))
    if not grow_hu:
        return bone & (hu < median - below_hu)
    # how far each bone voxel lies under the median (-inf outside the bone); strict '>' as the core's '<'
    depth = np.where(bone, median - hu.astype(np.float64), -np.inf)
    return apply_hysteresis_threshold(depth, grow_hu, below_hu) & bone
