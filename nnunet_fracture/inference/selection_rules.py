"""How the voxels of one box become pseudo-mask voxels: the ``fixed``, ``otsu`` and ``fraction`` rules.

Each rule sees one box's fused fracture probabilities P and nothing else:

- ``fixed``: keep ``P >= threshold``.
- ``otsu``: keep ``P > t`` with ``t = max(threshold_otsu(P in box), min_threshold)`` (scikit-image's Otsu
  threshold, whose convention is that the foreground lies strictly above it). A box with constant P has no
  Otsu threshold; it is kept whole if ``P >= max(0.5, min_threshold)`` and left empty otherwise.
- ``fraction``: keep the ``ceil(fraction x voxels in box)`` voxels with the highest P, among those with
  ``P >= min_threshold`` (so a box the model missed stays empty instead of being filled with noise). Ties are
  broken by array order inside the box (k, then j, then i, smallest first), so results are deterministic. The
  threshold reported is the smallest kept P.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_otsu

RULES = ("fixed", "otsu", "fraction")
#: A box with constant probability has no Otsu threshold; it is kept whole only at or above this value.
CONSTANT_BOX_THRESHOLD = 0.5


@dataclass(frozen=True)
class Rule:
    """How voxels inside a box become pseudo-mask voxels (module docstring).

    Raises:
        ValueError: unknown rule name or a parameter out of range.
    """

    name: str = "fixed"
    threshold: float = 0.5
    fraction: float = 0.3
    min_threshold: float = 0.05

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ValueError(f"unknown rule {self.name!r}; expected one of {', '.join(RULES)}")
        checks = (("threshold", self.threshold, 0.0, 1.0, False), ("fraction", self.fraction, 0.0, 1.0, False),
                  ("min-threshold", self.min_threshold, 0.0, 1.0, True))
        for label, value, low, high, low_closed in checks:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                (low <= value if low_closed else low < value) and (value < high if low_closed else value <= high))
            if not ok:
                interval = "[0, 1)" if low_closed else "(0, 1]"
                raise ValueError(f"--{label} must be a number in {interval}, got {value!r}")

    def parameters(self) -> dict:
        """The parameters that this rule uses (recorded in the provenance)."""
        if self.name == "fixed":
            return {"threshold": self.threshold}
        if self.name == "otsu":
            return {"min_threshold": self.min_threshold, "constant_box_threshold": CONSTANT_BOX_THRESHOLD}
        return {"fraction": self.fraction, "min_threshold": self.min_threshold}


@dataclass(frozen=True)
class BoxSelection:
    """The voxels a rule keeps in one box, and the threshold it used.

    ``comparison`` says how ``threshold`` was applied: ``">="`` or ``">"`` against P, or ``"rank"`` for the
    fraction rule (``threshold`` is then the smallest kept P, NaN when nothing is kept).
    """

    keep: np.ndarray
    threshold: float
    comparison: str


def select_in_box(probability: np.ndarray, rule: Rule) -> BoxSelection:
    """Apply ``rule`` to the fracture probabilities of one box (any shape; a boolean mask of that shape back)."""
    p = np.asarray(probability, dtype=np.float32)
    if p.size == 0:
        raise ValueError("a box holds no voxel")
    if rule.name == "fixed":
        return BoxSelection(p >= rule.threshold, float(rule.threshold), ">=")
    if rule.name == "otsu":
        if float(p.min()) == float(p.max()):
            cut = max(CONSTANT_BOX_THRESHOLD, rule.min_threshold)
            return BoxSelection(p >= cut, float(cut), ">=")
        cut = max(float(threshold_otsu(p.ravel())), rule.min_threshold)
        return BoxSelection(p > cut, cut, ">")
    flat = p.ravel()
    wanted = math.ceil(round(rule.fraction * flat.size, 6))
    eligible = int(np.count_nonzero(flat >= rule.min_threshold))
    n_keep = min(wanted, eligible)
    order = np.argsort(-flat, kind="stable")[:n_keep]
    keep = np.zeros(flat.size, dtype=bool)
    keep[order] = True
    threshold = float(flat[order[-1]]) if n_keep else math.nan
    return BoxSelection(keep.reshape(p.shape), threshold, "rank")
