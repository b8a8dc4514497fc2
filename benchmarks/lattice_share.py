"""How much of a weak model's answer is a lattice: the share of the voxels it calls fracture (P >= 0.5) that have no
face neighbour called fracture too.

    python benchmarks/lattice_share.py PREDICTIONS [PREDICTIONS ...] [--json OUT.json]

PREDICTIONS: ``nnUNetv2_predict --save_probabilities`` folders (the quality bench keeps them under
``benchmarks/work/quality/cpu/predictions``). A model whose plane bags score single voxels can satisfy every bag
with one confident voxel in every other position of a slice; such a map scores badly at P >= 0.5 although its
boxes "light up". A solid mask has a share near 0 (only its thinnest tips are isolated); a lattice, near 1.
Prints one row per folder (the share over all cases, and its range over cases) and optionally writes them as JSON.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from nnunet_fracture.inference.prediction_folders import PredictionFolder, read_grid
from nnunet_fracture.io.probability_files import load_fracture_probability

FACE_NEIGHBOURS = ndimage.generate_binary_structure(3, 1).astype(np.uint8)
FACE_NEIGHBOURS[1, 1, 1] = 0


def isolated_share(called: np.ndarray) -> tuple[int, int]:
    """(voxels called, of them with no face neighbour called) of a boolean 3D map."""
    if called.ndim != 3:
        raise ValueError(f"expected a 3D map, got shape {called.shape}")
    neighbours = ndimage.convolve(called.astype(np.uint8), FACE_NEIGHBOURS, mode="constant", cval=0)
    return int(called.sum()), int((called & (neighbours == 0)).sum())


def folder_share(predictions: Path, threshold: float = 0.5) -> dict:
    """The isolated share of every case of ``predictions`` and pooled over them."""
    folder = PredictionFolder.open(predictions, ".nii.gz")
    per_case = {}
    for case in tqdm(sorted(folder.probability_cases), desc=predictions.name[:30], unit="case"):
        grid = read_grid(folder.segmentation_file(case), "segmentation", "predict with nnUNetv2_predict, which writes "
                         "it beside the probabilities")  # only its header: the probabilities' shape
        probability = load_fracture_probability(folder.probability_file(case), case, grid.GetSize()[::-1])
        called, isolated = isolated_share(probability >= threshold)
        per_case[case] = {"called": called, "isolated": isolated}
    called = sum(c["called"] for c in per_case.values())
    shares = [c["isolated"] / c["called"] for c in per_case.values() if c["called"]]
    return {"folder": str(predictions), "threshold": threshold, "called": called,
            "isolated_share": sum(c["isolated"] for c in per_case.values()) / called if called else None,
            "case_min": min(shares, default=None), "case_max": max(shares, default=None), "cases": per_case}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("predictions", type=Path, nargs="+", help="nnUNetv2_predict --save_probabilities folders")
    p.add_argument("--threshold", type=float, default=0.5, help="P at or above which a voxel is called fracture")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    rows = [folder_share(folder, args.threshold) for folder in args.predictions]
    print("| predictions | voxels called | isolated share | range over cases |\n|---|---|---|---|")
    for r in rows:
        share = "n/a" if r["isolated_share"] is None else f"{r['isolated_share']:.2f}"
        span = "n/a" if r["case_min"] is None else f"{r['case_min']:.2f}-{r['case_max']:.2f}"
        print(f"| {r['folder']} | {r['called']} | {share} | {span} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
