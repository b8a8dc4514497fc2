"""Pseudo-mask refinement on the CT: a random walker seeded by the network's confident voxels, inside each box.

The network's P says *where* a fracture is; its edges at the resolution of a weak model are soft. Refinement
lets the CT decide the boundary (Khoreva, Benenson, Hosang, Hein & Schiele, "Simple does it: weakly supervised
instance and semantic segmentation", CVPR 2017, refine box-derived labels with GrabCut / a dense CRF):

- the box is cropped with a ``ring`` of voxels around it (clipped to the image);
- **seeds**: every crop voxel outside the box is background (the box says so), and every box voxel with
  ``P >= foreground_seed`` is fracture; box voxels with ``P <= background_seed`` are background too;
- scikit-image's :func:`~skimage.segmentation.random_walker` (Grady, "Random walks for image segmentation",
  IEEE TPAMI 2006) labels the rest from the CT in HU, with edge weights ``exp(-dHU^2 / (2 theta^2))`` between
  neighbours along the finest axis (a Gaussian in HU, unlike the affinity loss's ``exp(-|dHU| / theta)``); along a
  coarser axis the difference is divided by the spacing ratio, as scikit-image does with ``spacing``;
- the result is clipped to the box. A box without a fracture seed keeps the rule's mask (nothing to grow
  from), and a refined mask whose share of its box lies outside ``size_bounds`` is **reset** to the rule's mask
  and flagged, not kept (Simple Does It's reset of implausible masks).

The solver is scikit-image's (BSD licence, already a dependency); nothing here solves a linear system by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from skimage.segmentation import random_walker

METHODS = ("none", "random_walker")
BACKGROUND, FRACTURE = 1, 2


@dataclass(frozen=True)
class Refinement:
    """Settings of the refinement (module docstring).

    Raises:
        ValueError: on an unknown method or a parameter out of range.
    """

    method: str = "random_walker"
    foreground_seed: float = 0.8
    background_seed: float = 0.05
    theta_hu: float = 50.0
    ring: int = 2
    size_bounds: tuple[float, float] = (0.02, 0.3)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown refinement {self.method!r}; expected one of {', '.join(METHODS)}")
        if not 0 <= self.background_seed < self.foreground_seed <= 1:
            raise ValueError(f"seeds must satisfy 0 <= background seed < foreground seed <= 1, got "
                             f"{self.background_seed} and {self.foreground_seed}")
        if not math.isfinite(self.theta_hu) or self.theta_hu <= 0:
            raise ValueError(f"theta_hu must be a finite number > 0, got {self.theta_hu!r}")
        if self.ring < 1:
            raise ValueError(f"ring must be >= 1 voxel (the background seeds live there), got {self.ring!r}")
        low, high = self.size_bounds
        if not 0 <= low < high <= 1:
            raise ValueError(f"size bounds must satisfy 0 <= lower < upper <= 1, got {self.size_bounds!r}")

    def parameters(self) -> dict:
        """What the provenance records."""
        return {"method": self.method, "foreground_seed": self.foreground_seed,
                "background_seed": self.background_seed, "theta_hu": self.theta_hu, "ring": self.ring,
                "size_bounds": list(self.size_bounds)}


@dataclass(frozen=True)
class RefinedBox:
    """The refined mask of one box (box-shaped bool array) and what happened: ``refined``, ``no_seed``,
    ``no_contrast`` (a uniform CT crop), ``reset`` (the refined mask broke the size bounds) or ``none``."""

    keep: np.ndarray
    outcome: str


def walker_beta(hu: np.ndarray, theta_hu: float) -> float:
    """The ``beta`` that makes scikit-image's edge weight ``exp(-beta dHU^2 / (10 std(HU)))`` equal to
    ``exp(-dHU^2 / (2 theta^2))``: ``beta = 10 std(HU) / (2 theta^2)``."""
    spread = float(np.std(hu))
    return 10.0 * max(spread, 1e-6) / (2.0 * theta_hu ** 2)


def refine_box(ct_hu: np.ndarray, probability: np.ndarray, region: tuple[slice, ...], rule_keep: np.ndarray,
               settings: Refinement, spacing: Optional[tuple[float, ...]] = None) -> RefinedBox:
    """Refine one box's pseudo-mask (module docstring).

    Args:
        ct_hu: the whole CT in HU, (k, j, i).
        probability: the fused fracture probability, same shape.
        region: the box's numpy index (slices) into both.
        rule_keep: the rule's mask of the box (bool, the box's shape): kept when refinement cannot run or resets.
        settings: the refinement settings.
        spacing: voxel spacing in the array's axis order (mm), for anisotropic images.

    Returns:
        The refined box mask and its outcome.
    """
    if settings.method == "none":
        return RefinedBox(rule_keep, "none")
    box_p = probability[region]
    if not bool((box_p >= settings.foreground_seed).any()):
        return RefinedBox(rule_keep, "no_seed")
    crop = tuple(slice(max(s.start - settings.ring, 0), min(s.stop + settings.ring, n))
                 for s, n in zip(region, ct_hu.shape))
    inner = tuple(slice(s.start - c.start, s.stop - c.start) for s, c in zip(region, crop))
    labels = np.full(tuple(c.stop - c.start for c in crop), BACKGROUND, dtype=np.int32)
    seeds = np.zeros(box_p.shape, dtype=np.int32)
    seeds[box_p <= settings.background_seed] = BACKGROUND
    seeds[box_p >= settings.foreground_seed] = FRACTURE
    labels[inner] = seeds
    hu = ct_hu[crop].astype(np.float64)
    if float(hu.std()) == 0.0:  # a uniform CT has no edge to follow (and scikit-image would divide by 0)
        return RefinedBox(rule_keep, "no_contrast")
    relative = None if spacing is None else tuple(s / min(spacing) for s in spacing)
    walked = random_walker(hu, labels, beta=walker_beta(hu, settings.theta_hu), mode="cg_j", tol=1e-4,
                           spacing=relative)
    keep = walked[inner] == FRACTURE
    share = float(keep.mean())
    low, high = settings.size_bounds
    if not low <= share <= high:
        return RefinedBox(rule_keep, "reset")
    return RefinedBox(keep, "refined")
