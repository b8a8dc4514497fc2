"""Per-image PolyDice-1 ``eps1`` from MC-Dropout difficulty (by rank), and the checkpointable difficulty table
(the method: :mod:`nnunet_fracture.training.mc_dropout`)."""
from __future__ import annotations

import csv
import math
from pathlib import Path


DIRECTIONS = ("harder_larger", "harder_smaller")


def neutral_epsilon(eps_min: float, eps_max: float) -> float:
    """The ``eps1`` of a case without a difficulty: the middle of the range (the median rank's value)."""
    return (eps_min + eps_max) / 2.0


def epsilon_by_rank(difficulty: dict[str, float], eps_min: float, eps_max: float,
                    direction: str = "harder_larger") -> dict[str, float]:
    """``eps1`` per case from its difficulty's rank, linear over ``[eps_min, eps_max]``.

    The hardest case gets ``eps_max`` (``"harder_larger"``) or ``eps_min`` (``"harder_smaller"``); ties share
    their mean rank; a single case (or all tied) gets the midpoint. NaN difficulties are left out.

    Raises:
        ValueError: for an unknown direction or ``eps_min > eps_max``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not eps_min <= eps_max:
        raise ValueError(f"eps_min must be <= eps_max, got {eps_min!r} > {eps_max!r}")
    items = [(case, value) for case, value in difficulty.items() if value is not None and not math.isnan(value)]
    if not items:
        return {}
    if len(items) == 1:
        return {items[0][0]: neutral_epsilon(eps_min, eps_max)}
    from scipy.stats import rankdata

    ranks = rankdata([v for _, v in items], method="average") - 1  # 0 = easiest
    fraction = ranks / (len(items) - 1)
    if direction == "harder_smaller":
        fraction = 1 - fraction
    return {case: float(eps_min + (eps_max - eps_min) * f) for (case, _), f in zip(items, fraction)}


# --- the table ------------------------------------------------------------------------------------------------
class DifficultyTable:
    """Difficulty per (epoch of the round, case), plus the ``eps1`` in effect; checkpointable."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}

    def record(self, epoch: int, values: dict[str, float]) -> None:
        self.rows[int(epoch)] = {str(k): float(v) for k, v in values.items()}

    def latest(self) -> dict[str, float]:
        """Each case's most recent difficulty."""
        latest: dict[str, float] = {}
        for epoch in sorted(self.rows):
            latest.update(self.rows[epoch])
        return latest

    @property
    def cases(self) -> list[str]:
        return sorted({case for row in self.rows.values() for case in row})

    def state_dict(self) -> dict:
        return {"rows": {int(e): dict(r) for e, r in self.rows.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.rows = {int(e): {str(k): float(v) for k, v in r.items()} for e, r in (state or {}).get("rows", {}).items()}

    def write_csv(self, path: Path) -> None:
        """``epoch,<case>,<case>,...``: one row per round, empty where a case was not assessed."""
        cases = self.cases
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", *cases])
            for epoch in sorted(self.rows):
                row = self.rows[epoch]
                writer.writerow([epoch, *(repr(row[c]) if c in row else "" for c in cases)])


def write_epsilon_csv(path: Path, epsilon: dict[str, float]) -> None:
    """``case,epsilon``: the ``eps1`` in effect per case after the latest round."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "epsilon"])
        for case in sorted(epsilon):
            writer.writerow([case, repr(epsilon[case])])
