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
from scipy import ndimage


MAX_SLICED_NUMBER = 65535
"""Up to this box number, per-box maxima are taken inside each box's bounding slices (``find_objects``)."""


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
            ValueError: different shapes (both are quoted), a threshold outside (0, 1], or box numbers with
                fractions.
        """
        probability = np.asarray(probability)
        box_numbers = np.asarray(box_numbers)
        if probability.shape != box_numbers.shape:
            raise ValueError(f"probability has shape {probability.shape} but the box-number map has shape "
                             f"{box_numbers.shape}; they must match")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if box_numbers.dtype == bool:
            box_numbers = box_numbers.view(np.uint8)
        elif box_numbers.dtype.kind not in "iu":
            if not np.array_equal(box_numbers, np.round(box_numbers)):
                raise ValueError(f"box numbers must be whole numbers, got {box_numbers.dtype} values with fractions")
            box_numbers = box_numbers.astype(np.int64)
        # Memory: at most a few byte-per-voxel masks and the inside voxels are allocated, never a float64 copy
        # of the volume (a 512 x 512 x 300 case would need 630 MB per copy). Sums are taken in float64 and
        # comparisons made against the threshold as a float64 number, whatever the input precision.
        limit = np.float64(threshold)
        inside = box_numbers > 0
        n_inside = int(np.count_nonzero(inside))
        positive = probability >= limit
        outside_positive = int(np.count_nonzero(positive)) - int(np.count_nonzero(positive[inside]))
        del positive
        boxes_total = boxes_hit = 0
        if n_inside and int(box_numbers.max()) <= MAX_SLICED_NUMBER:
            # per-box maximum inside each box's bounding slices only (find_objects ignores numbers <= 0)
            for number, region in enumerate(ndimage.find_objects(box_numbers), start=1):
                if region is None:
                    continue
                boxes_total += 1
                boxes_hit += bool(probability[region][box_numbers[region] == number].max() >= limit)
        elif n_inside:  # huge box numbers: sort the inside voxels by number and reduce each run
            ids = box_numbers[inside]
            order = np.argsort(ids, kind="stable")
            sorted_ids = ids[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            box_max = np.maximum.reduceat(probability[inside][order], starts)
            boxes_total, boxes_hit = int(starts.size), int((box_max >= limit).sum())
        return cls(mass_inside=float(np.sum(probability[inside], dtype=np.float64)),
                   mass_total=float(np.sum(probability, dtype=np.float64)), boxes_hit=boxes_hit,
                   boxes_total=boxes_total, outside_positive=outside_positive,
                   outside_total=int(inside.size) - n_inside)

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
