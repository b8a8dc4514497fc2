"""How well the dark-lesion rule draws clefts, per setting, on phantoms whose truth is known.

    python benchmarks/cleft_masks.py                       # the quality bench's three training phantoms
    python benchmarks/cleft_masks.py --phantoms benchmarks/work/quality/cpu/phantom_seed1000_10

For every cleft of each phantom (``phantom.json``), the box is cut from the CT, its bone is the interior of the
vertebra it names (1.5 mm shell, as the bench's ``--inside-vertebra 1.5``), and ``pseudo-masks``' own
``dark_lesion_mask`` draws the mask for each ``--dark-lesions`` / ``--dark-grow`` pair. Voxels are pooled over the
cleft boxes of a phantom: Dice, precision and recall against the phantom's truth. This is how the settings were
chosen, on the training phantoms only (the truth of weak-box data is not known in practice: run it on phantoms
like your data, not on your data); the bench's held-out test phantoms judge them. The rule's other half, which
boxes are dark, depends on the model and is not measured here. Prints a Markdown table and writes
``benchmarks/results/cleft_masks.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_fracture.inference.lesion_polarity import dark_lesion_mask
from nnunet_fracture.inference.vertebra_interior import vertebra_interior

WORK = Path(__file__).resolve().parent / "work" / "quality" / "cpu"
TRAINING = tuple(WORK / f"phantom_seed{s}_25" for s in (0, 1, 2))
SETTINGS = ((75.0, 0.0), (100.0, 0.0), (150.0, 0.0), (100.0, 25.0), (100.0, 50.0), (100.0, 75.0), (150.0, 100.0))
SHELL_MM = 1.5


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def cleft_counts(phantom: Path, settings=SETTINGS, shell_mm: float = SHELL_MM) -> dict:
    """``{(below_hu, grow_hu): [tp, fp, fn]}`` pooled over the cleft boxes of ``phantom`` (voxel boxes only)."""
    meta = json.loads((phantom / "phantom.json").read_text(encoding="utf-8"))
    counts = {setting: np.zeros(3, dtype=np.int64) for setting in settings}
    for case in tqdm(meta["cases"], desc=phantom.name, unit="case", leave=False):
        clefts = [f for f in case["fractures"] if f["type"] == "cleft"]
        if not clefts:
            continue
        name, spacing = case["case_id"], tuple(case["spacing"][::-1])
        hu = read(phantom / "images" / f"{name}.nii.gz").astype(np.float64)
        truth = read(phantom / "masks" / f"{name}.nii.gz") > 0
        vertebrae = read(phantom / "vertebrae" / f"{name}.nii.gz")
        for fracture in clefts:
            box = fracture["box"]
            if box.get("space", "voxel") != "voxel":
                raise ValueError(f"{phantom / 'phantom.json'}, case {name}: box in {box['space']!r} space; this "
                                 "script reads voxel boxes. Fix: generate the phantom with voxel boxes (the default)")
            (x0, y0, z0), (x1, y1, z1) = box["lo"], box["hi"]
            region = (slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1))
            bone = vertebra_interior(vertebrae, fracture["label"], spacing, shell_mm)[region]
            t = truth[region]
            for (below, grow), c in counts.items():
                m = dark_lesion_mask(hu[region], bone, below, grow)
                c += (np.count_nonzero(m & t), np.count_nonzero(m & ~t), np.count_nonzero(~m & t))
    return counts


def scores(tp: int, fp: int, fn: int) -> dict:
    return {"dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
            "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phantoms", nargs="+", type=Path, default=list(TRAINING),
                   help="phantom folders (`nnunet-fracture phantom` output; default: the bench's training phantoms)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "cleft_masks.json")
    args = p.parse_args(argv)
    for phantom in args.phantoms:
        if not (phantom / "phantom.json").is_file():
            p.error(f"{phantom}: no phantom.json; pass `nnunet-fracture phantom` output folders (the bench writes "
                    f"them under {WORK} when it runs)")
    results = {phantom.name: {f"{below:g}/{grow:g}": scores(*c.tolist()) for (below, grow), c in
                              cleft_counts(phantom).items()} for phantom in args.phantoms}
    print("| --dark-lesions / --dark-grow | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for key in next(iter(results.values())):
        cells = [f"{r[key]['dice']:.3f} (P {r[key]['precision']:.2f}, R {r[key]['recall']:.2f})" for r in
                 results.values()]
        print(f"| {key} | " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"shell_mm": SHELL_MM, "pooled_over": "cleft boxes",
                                    "phantoms": results}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
