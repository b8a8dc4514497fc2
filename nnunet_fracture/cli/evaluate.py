"""``nnunet-fracture evaluate``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="voxel, slice, case/vertebra detection and box metrics against ground-truth masks, with figures",
        description="Compare an nnU-Net prediction folder (masks, and probabilities from "
        "--save_probabilities) with a folder of ground-truth masks of the same geometry. Writes metrics.csv "
        "(one row per case), summary.json (pooled numbers: 3D voxel Dice/IoU/precision/recall, voxel PR-AUC/ROC-AUC "
        "and best threshold, per-slice metrics along each axis, case- and vertebra-level detection AUC, box-aware "
        "numbers), vertebrae.csv (with --vertebrae) and figures/*.png. Detection scores are the maximum "
        "probability per slice/case/vertebra when every case has probabilities, else 'predicted mask non-empty'.",
    )
    p.add_argument("pred", type=Path, help="nnU-Net prediction folder")
    p.add_argument("gt", type=Path, help="folder of ground-truth masks (<case>.nii.gz)")
    p.add_argument("--out", type=Path, required=True,
                   help="report folder (created whole when every case is done; see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out (nothing of the old report survives)")
    p.add_argument("--images", type=Path, default=None,
                   help="folder with the CTs (<case>_0000.nii.gz) for overlay figures")
    p.add_argument("--boxes", type=Path, default=None,
                   help="a raw dataset's boxes.json, or its labelsTr folder of box-number maps (label n = box n): "
                   "adds mass inside boxes, box hit rate and outside false-positive rate")
    p.add_argument("--vertebrae", type=Path, default=None,
                   help="folder of vertebra label maps <case>.nii.gz (VerSe numbering, e.g. vertebraeTr/): adds "
                   "vertebra-level detection and vertebrae.csv")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="operating point in (0, 1]: fracture where probability >= threshold (default 0.5)")
    p.add_argument("--vertebra-min-voxels", type=int, default=1,
                   help="ground-truth fracture voxels a vertebra needs to count as fractured (default 1)")
    p.add_argument("--allow-missing", action="store_true",
                   help="evaluate although some predicted cases have no ground-truth mask (they are left out, printed "
                        "and listed in summary.json); without it that is an error")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from nnunet_fracture.evaluation.report import evaluate_folder

    summary = evaluate_folder(args.pred, args.gt, args.out, images=args.images, boxes=args.boxes,
                              vertebrae=args.vertebrae, threshold=args.threshold,
                              vertebra_min_voxels=args.vertebra_min_voxels, allow_missing=args.allow_missing,
                              overwrite=args.overwrite)
    case_auc = summary["detection"]["case"]["roc_auc"]
    print(f"mean Dice {summary['mean_dice']:.4f} over {summary['n_cases']} cases; case-level AUC "
          f"{'n/a' if case_auc is None else f'{case_auc:.3f}'}; report in {args.out}")
