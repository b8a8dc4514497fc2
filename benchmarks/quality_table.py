"""The quality bench's Markdown table, built from ``benchmarks/results/quality.json`` only (never by hand)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

COLUMNS = (("whole_volume_dice", "Dice (whole volume)"), ("whole_volume_precision", "precision"),
           ("whole_volume_recall", "recall"), ("in_box_dice", "Dice in boxes"), ("pr_auc", "PR-AUC"),
           ("best_f1", "best F1"), ("detection_auc", "case AUC"), ("fp_voxels_per_normal_case", "FP voxels / normal case"))


def mean_std(values: list) -> str:
    """``0.712 ± 0.031 (3)`` over the seeds that have a number; ``n/a`` when none has."""
    numbers = np.array([v for v in values if v is not None], dtype=float)
    if numbers.size == 0:
        return "n/a"
    if numbers.size == 1:
        return f"{numbers[0]:.0f} (1)" if abs(numbers[0]) >= 10 else f"{numbers[0]:.3f} (1)"
    mean, std = numbers.mean(), numbers.std(ddof=1)
    if abs(mean) >= 10:
        return f"{mean:.0f} ± {std:.0f} ({numbers.size})"
    return f"{mean:.3f} ± {std:.3f} ({numbers.size})"


def markdown_table(data: dict) -> str:
    """One row per arm with runs: mean ± sample std over seeds (number of seeds in brackets)."""
    regime = data["regime"]
    header = "| arm | " + " | ".join(title for _, title in COLUMNS) + " | recall by kind | s / run |"
    rows = [header, "|" + "---|" * (len(COLUMNS) + 3)]
    for arm, entry in data["arms"].items():
        seeds = list(entry["seeds"].values())
        kinds = sorted({k for s in seeds for k in (s.get("recall_by_kind") or {})})
        by_kind = ", ".join(f"{k} {mean_std([(s.get('recall_by_kind') or {}).get(k) for s in seeds])}"
                            for k in kinds) or "n/a"
        cells = [mean_std([s.get(key) for s in seeds]) for key, _ in COLUMNS]
        seconds = np.mean([s["seconds"] for s in seeds])
        rows.append(f"| `{arm}` | " + " | ".join(cells) + f" | {by_kind} | {seconds:.0f} |")
    caption = (f"Regime `{regime['name']}`: {regime['train_cases']} training / {regime['test_cases']} test phantoms "
               f"({regime['contrast']} contrast, {regime['spacing'][0]} mm), plans `{regime['plans']}`, "
               f"{regime['epochs']} x {regime['iterations']} iterations, foreground share {regime['foreground']} "
               f"(per sample), fold `all`, {'with' if regime['tta'] else 'no'} test-time mirroring; mean ± std over "
               f"seeds (count in brackets); phantom version {data['phantom_version']}.")
    seconds = [s["seconds"] for entry in data["arms"].values() for s in entry["seeds"].values()]
    trained = sorted(t for t in seconds if t > 600)  # a run that trained a model; the others reuse one
    if seconds:
        caption += (f" The {len(seconds)} arm x seed runs below took {sum(seconds) / 3600:.1f} hours of this machine "
                    f"in all" + (f"; those over 10 minutes (they trained one model or more) "
                                 f"{np.median(trained):.0f} s in the median" if trained else "") + ".")
    facts = data.get("test_set")
    if facts and facts.get("mean_fracture_voxels_per_fractured_case"):
        caption += (f" The test set has {facts['cases']} cases, {facts['fracture_free_cases']} of them fracture-free; "
                    f"a fractured test case holds {facts['mean_fracture_voxels_per_fractured_case']:.0f} fracture "
                    f"voxels on average (the scale of the false positives per fracture-free case).")
    return caption + "\n\n" + "\n".join(rows)


def paired_change(arm_seeds: dict, base_seeds: dict, key: str, same_model: bool = False) -> str:
    """``+0.093 ± 0.061, 3 of 3 up``: the mean and sample std of ``arm - base`` over the seeds both have a number
    for, and on how many of them the arm is higher; ``n/a`` without a common seed.

    With ``same_model`` (the arm post-processes its base's model) a seed pairs only if both results scored the same
    predictions (``predictions_id``), or neither records which: another run of the model is another sample."""
    def one_model(a: dict, b: dict) -> bool:
        return not same_model or a.get("predictions_id") == b.get("predictions_id")

    pairs = [(arm_seeds[s].get(key), base_seeds[s].get(key)) for s in sorted(set(arm_seeds) & set(base_seeds))
             if one_model(arm_seeds[s], base_seeds[s])]
    deltas = np.array([a - b for a, b in pairs if a is not None and b is not None], dtype=float)
    if deltas.size == 0:
        return "n/a"
    if not deltas.any():  # e.g. the same model's whole volumes under another pseudo-mask rule
        return "same"
    spread = f" ± {deltas.std(ddof=1):.3f}" if deltas.size > 1 else ""
    return f"{deltas.mean():+.3f}{spread}, {int((deltas > 0).sum())} of {deltas.size} up"


def ablation_table(data: dict, steps: tuple, relation=lambda arm, base: None) -> str:
    """One row per ``(arm, base arm or None, what it adds)`` of ``steps``: the arm's Dice in the boxes and over whole
    volumes, each with its change against the base arm paired seed by seed, and its false positives.
    ``relation(arm, base)``: ``"same_model"`` when the arm scores its base's model (see :func:`paired_change`),
    ``"continues"`` when it is one self-training round more: a seed whose result kept its own next-to-last round
    (``previous_round``) pairs with that, the same run, instead of the base arm's cached result."""
    rows = ["| step | arm | Dice in boxes | vs base | Dice (whole volume) | vs base | FP voxels / normal case |",
            "|---|---|---|---|---|---|---|"]
    arms = data["arms"]
    for arm, base, what in steps:
        seeds = arms.get(arm, {}).get("seeds", {})
        if not seeds:
            rows.append(f"| {what} | `{arm}` | no run yet | | | | |")
            continue
        base_seeds = dict(arms.get(base, {}).get("seeds", {})) if base else {}
        how = relation(arm, base) if base else None
        if how == "continues":
            base_seeds.update({s: e["previous_round"] for s, e in seeds.items() if e.get("previous_round")})
        same = how == "same_model"
        cells = [mean_std([s.get("in_box_dice") for s in seeds.values()]),
                 paired_change(seeds, base_seeds, "in_box_dice", same) if base else "",
                 mean_std([s.get("whole_volume_dice") for s in seeds.values()]),
                 paired_change(seeds, base_seeds, "whole_volume_dice", same) if base else "",
                 mean_std([s.get("fp_voxels_per_normal_case") for s in seeds.values()])]
        label = f"{what} (on `{base}`)" if base else what
        rows.append(f"| {label} | `{arm}` | " + " | ".join(cells) + " |")
    caption = ("Each row adds one ingredient to its base arm; `vs base` is the change paired seed by seed (mean ± std "
               "over the seeds both ran, and on how many the arm is higher; a row that post-processes its base's model "
               "pairs only seeds scored on the same run of it, where both results record which, and a further self-training "
               "round pairs with its own run's previous round where it kept it). A change within its spread, or not of "
               "one sign on every seed, is no claim. A weak model's Dice in boxes is that of its pseudo-masks, its "
               "whole-volume Dice that of P >= 0.5; a self-training round's both are its own masks.")
    return caption + "\n\n" + "\n".join(rows)


def update_readme(readme: Path, table: str, begin: str, end: str) -> None:
    """Replace the text between the ``begin`` and ``end`` marker lines of ``readme`` by ``table``."""
    text = readme.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise ValueError(f"{readme} lacks the markers {begin} ... {end}; add them where the table belongs")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{table}\n{end}{tail}", encoding="utf-8")
