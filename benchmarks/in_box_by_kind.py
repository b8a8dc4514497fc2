"""In-box Dice, precision and recall of pseudo-masks per fracture kind, on the quality bench's test phantoms.

    python benchmarks/in_box_by_kind.py benchmarks/work/quality/cpu/pseudo_masks/solid_bags_refined_seed0 [...]

Each folder is a ``pseudo-masks`` output (``masks/<case>.nii.gz``) of the bench's test cases; the truth and the
kind of each box come from the test phantom's ``phantom.json``. Voxels are pooled over the boxes of one kind,
as the bench pools them over all boxes (``in_box_dice``). Prints one Markdown row per folder and writes the
numbers to ``in_box_by_kind.json`` in each folder.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

TEST_PHANTOM = Path(__file__).resolve().parent / "work" / "quality" / "cpu" / "phantom_seed1000_10"


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def by_kind(masks: Path, phantom: Path) -> dict:
    """``{kind: {"dice", "precision", "recall", "boxes"}}`` of the masks in ``masks/`` inside each kind's boxes."""
    counts: dict[str, list[int]] = {}
    for case in json.loads((phantom / "phantom.json").read_text(encoding="utf-8"))["cases"]:
        if not case["fractures"]:
            continue
        truth = _read(phantom / "masks" / f"{case['case_id']}.nii.gz") > 0
        called = _read(masks / "masks" / f"{case['case_id']}.nii.gz") > 0
        for fracture in case["fractures"]:
            lo, hi = fracture["box"]["lo"], fracture["box"]["hi"]  # voxel (i, j, k), inclusive
            region = tuple(slice(lo[a], hi[a] + 1) for a in (2, 1, 0))
            t, c = truth[region], called[region]
            n = counts.setdefault(fracture["type"], [0, 0, 0, 0])
            n[0] += int((t & c).sum()); n[1] += int(c.sum()); n[2] += int(t.sum()); n[3] += 1
    return {kind: {"dice": 2 * tp / (called + true), "precision": tp / called if called else None,
                   "recall": tp / true, "boxes": boxes}
            for kind, (tp, called, true, boxes) in sorted(counts.items())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="pseudo-masks output folders of the bench's test cases")
    p.add_argument("--phantom", type=Path, default=TEST_PHANTOM, help="the test phantom (default: the cpu regime's)")
    args = p.parse_args(argv)
    for folder in args.folders:
        if not (folder / "masks").is_dir():
            p.error(f"{folder}: no masks/ folder; pass a `nnunet-fracture pseudo-masks` output folder")
    print("| folder | kind | boxes | Dice | precision | recall |\n|---|---|---|---|---|---|")
    for folder in args.folders:
        result = by_kind(folder, args.phantom)
        (folder / "in_box_by_kind.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        for kind, r in result.items():
            precision = "-" if r["precision"] is None else f"{r['precision']:.3f}"
            print(f"| {folder.name} | {kind} | {r['boxes']} | {r['dice']:.3f} | {precision} | {r['recall']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
