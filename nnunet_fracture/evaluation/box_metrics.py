"""Box-aware numbers: how a fracture probability map sits relative to the annotated boxes.

Without voxel ground truth, boxes still say two things for certain: every voxel outside every box is
background, and every box holds some fracture. Three numbers follow, used by ``evaluate --boxes``, by the
weak-box trainers' validation and by the pseudo-mask benchmark:

- **mass inside boxes**: sum of P inside any box / sum of P everywhere (threshold-free; NaN when P is 0
  everywhere);
- **box hit rate**: the share of boxes whose maximum P reaches the threshold (NaN without boxes);
- **outside false-positive rate**: the share of voxels outside every box with P at or above the threshold
  (NaN when there is no such voxel).

Statistics add up (``a + b``), so they can be pooled over patches, cases or a whole dataset, streaming.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class BoxStats:
    """Summable counts behind the box-aware numbers (see the module docstring)."""

    mass_inside: float = 0.0
    mass_total: float = 0.0
    boxes_hit: int = 0
    boxes_total: int = 0
    outside_positive: int = 0
    outside_total: int = 0

    @classmethod
    def from_arrays(cls, probability: np.ndarray, box_numbers: np.ndarray, threshold: float = 0.5) -> "BoxStats":
        """Counts for one probability map and its box-number map (0 outside, n inside box n).

        Raises:
            ValueError: different shapes (both are quoted), or a threshold outside (0, 1].
        """
        probability = np.asarray(probability)
        box_numbers = np.asarray(box_numbers)
        if probability.shape != box_numbers.shape:
            raise ValueError(f"probability has shape {probability.shape} but the box-number map has shape "
                             f"{box_numbers.shape}; they must match")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        p = probability.astype(np.float64, copy=False).ravel()
        ids = box_numbers.ravel()
        inside = ids > 0
        outside_p = p[~inside]
        boxes_total = boxes_hit = 0
        if inside.any():
            present = np.unique(ids[inside])
            # per-box maximum in one pass: sort by box number, reduce each run
            order = np.argsort(ids[inside], kind="stable")
            sorted_ids, sorted_p = ids[inside][order], p[inside][order]
            starts = np.searchsorted(sorted_ids, present)
            box_max = np.maximum.reduceat(sorted_p, starts)
            boxes_total, boxes_hit = int(present.size), int((box_max >= threshold).sum())
        return cls(mass_inside=float(p[inside].sum()), mass_total=float(p.sum()), boxes_hit=boxes_hit,
                   boxes_total=boxes_total, outside_positive=int((outside_p >= threshold).sum()),
                   outside_total=int(outside_p.size))

    def __add__(self, other: "BoxStats") -> "BoxStats":
        if not isinstance(other, BoxStats):
            return NotImplemented
        return BoxStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def mass_inside_fraction(self) -> float:
        return self.mass_inside / self.mass_total if self.mass_total > 0 else math.nan

    @property
    def hit_rate(self) -> float:
        return self.boxes_hit / self.boxes_total if self.boxes_total else math.nan

    @property
    def outside_fp_rate(self) -> float:
        return self.outside_positive / self.outside_total if self.outside_total else math.nan

    def as_dict(self) -> dict:
        """Counts and the three rates, JSON-ready (NaN stays NaN; ``json`` writes it as ``NaN``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(mass_inside_fraction=self.mass_inside_fraction, box_hit_rate=self.hit_rate,
                   outside_fp_rate=self.outside_fp_rate)
        return out
