"""``difficulty.png`` of ``nnUNetTrainerPolyDiceMCD``: each training case's MC-Dropout difficulty over the rounds."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def difficulty_figure(rows: Mapping[int, Mapping[str, float]], cases: Sequence[str], path: Path,
                      title: str = "MC-Dropout difficulty per case") -> Path:
    """A PNG with one line per case: its difficulty over the epochs of the rounds.

    Args:
        rows: ``{epoch: {case: difficulty}}`` (a :class:`~nnunet_fracture.training.difficulty.DifficultyTable`'s
            ``rows``); a case missing from a round is skipped there.
        cases: the cases to draw, one line each.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for case in cases:
        points = [(e, r[case]) for e, r in sorted(rows.items()) if case in r]
        ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3, linewidth=1,
                label=case)
    ax.set_xlabel("epoch")
    ax.set_ylabel("difficulty (MC-Dropout variance)")
    ax.set_title(title)
    if len(cases) <= 20:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
