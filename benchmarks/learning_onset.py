"""When each training of a model folder started to learn: the first epoch whose online pseudo Dice is above 0.05.

    python benchmarks/learning_onset.py MODEL_FOLDER [...] [--json benchmarks/results/learning_onset.json]

    MODEL_FOLDER: e.g. benchmarks/work/quality/cpu/nnUNet_results/Dataset7?0_*/nnUNetTrainerFracture__*

Reads every ``fold_*/training_log_*.txt`` under each folder (nnU-Net keeps one per launch, while a later run of the
same trainer replaces the checkpoint), so the runs the quality bench trained in one folder over a day are all
there. Before its onset a model predicts (next to) no foreground voxel on any validation patch: on the bench's
120-epoch schedule, epochs spent there are epochs the model does not learn the fractures. Prints one Markdown row
per log: epochs logged, the onset, the foreground share it trained with, and the mean pseudo Dice of its last 10
epochs.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from nnunet_fracture.training.training_log import (LAST_EPOCHS, learning_onset, pseudo_dice_in_log,
                                                   pseudo_dice_summary)

_FOREGROUND = re.compile(r"oversample_foreground_percent=([0-9.]+)")


def log_row(log: Path) -> dict:
    """Onset, length, foreground share and last-epoch pseudo Dice of one ``training_log_*.txt``."""
    text = log.read_text(encoding="utf-8", errors="replace")
    dice = pseudo_dice_in_log(text)
    share = _FOREGROUND.search(text)
    return {"log": str(log), "epochs": len(dice), "onset_epoch": learning_onset(dice),
            "oversample_foreground_percent": float(share.group(1)) if share else None,
            **pseudo_dice_summary(dice)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", type=Path, nargs="+", help="nnU-Net model folders (TRAINER__PLANS__CONFIGURATION)")
    p.add_argument("--min-epochs", type=int, default=2, help="leave out launches that logged fewer epochs (stopped)")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    logs = sorted(log for folder in args.models for log in folder.glob("fold_*/training_log_*.txt"))
    if not logs:
        raise SystemExit(f"no fold_*/training_log_*.txt under {', '.join(map(str, args.models))}. Fix: pass the "
                         f"model folders nnUNetv2_train wrote (nnUNet_results/DATASET/TRAINER__PLANS__CONFIG).")
    rows = [row for row in map(log_row, logs) if row["epochs"] >= args.min_epochs]
    print(f"| training log | epochs | onset epoch | foreground share | pseudo Dice, last {LAST_EPOCHS} epochs |\n"
          "|---|---|---|---|---|")
    for r in rows:
        last = "n/a" if r["pseudo_dice_last_epochs"] is None else f"{r['pseudo_dice_last_epochs']:.3f}"
        onset = "never" if r["onset_epoch"] is None else r["onset_epoch"]
        name = "/".join(Path(r["log"]).parts[-4:])
        print(f"| {name} | {r['epochs']} | {onset} | {r['oversample_foreground_percent']} | {last} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
