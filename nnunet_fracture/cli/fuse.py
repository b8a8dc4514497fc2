"""``nnunet-fracture fuse``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


FUSE_DESCRIPTION = """\
Fuse the fracture probabilities of 2D models trained on axial, coronal and sagittal slices (tri-planar fusion),
and/or multiply in a classification head's probability.

In:
  --axial DIR, --coronal DIR, --sagittal DIR
              nnUNetv2_predict output folders made with --save_probabilities (<case>.npz + <case>.nii.gz); the
              coronal and sagittal ones predicted on copies written by `nnunet-fracture reorient`. The <case>.nii.gz
              next to each .npz carries the grid its probabilities lie on; every folder must hold the same cases.
  --dataset   the source raw dataset (ID, DatasetXXX_NAME or folder): the result goes on its imagesTr grids.
              Default: the grids of the axial folder's segmentations.
  Predictions on reoriented copies map back exactly (an index permutation, no interpolation); other grids are an
  error unless --resample allows interpolation.

Fusion (voxel by voxel):
  product   P = P_ax * P_co * P_sa: high only where every plane agrees (not calibrated: three 0.8s give 0.51)
  mean      P = (P_ax + P_co + P_sa) / 3, the baseline
  --class-probability: P = P_class * P, with per-case maps <case>.nii.gz or a CSV case,probability.

Out (--out DIR), readable by `nnunet-fracture evaluate`, `pseudo-masks` and `visualize`:
  <case>.npz     probabilities (1, z, y, x) float32, the fused fracture probability
  <case>.nii.gz  uint8 segmentation, P >= --threshold, on the target grid
  fusion.json    provenance: inputs, each model's 2D slicing plane (from its plans.json), method, mapping
"""


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse",
        help="tri-planar product/mean fusion of axial, coronal and sagittal predictions; class-head fusion",
        description=FUSE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example (coronal copy 502 and sagittal copy 503 of dataset 501, see `nnunet-fracture reorient`):\n"
               "  nnUNetv2_predict -d 501 -c 2d -f 0 -i $nnUNet_raw/Dataset501_Phantom/imagesTr -o pred_ax "
               "--save_probabilities\n"
               "  nnUNetv2_predict -d 502 -c 2d -f 0 -p nnUNetPlans_coronal -i $nnUNet_raw/Dataset502_Phantom_coronal/"
               "imagesTr -o pred_co --save_probabilities\n"
               "  nnUNetv2_predict -d 503 -c 2d -f 0 -p nnUNetPlans_sagittal -i "
               "$nnUNet_raw/Dataset503_Phantom_sagittal/imagesTr -o pred_sa --save_probabilities\n"
               "  nnunet-fracture fuse --axial pred_ax --coronal pred_co --sagittal pred_sa --dataset 501 "
               "--out fused/\n"
               "  nnunet-fracture evaluate fused/ $nnUNet_raw/Dataset501_Phantom/groundTruthTr --out report/",
    )
    for plane in ("axial", "coronal", "sagittal"):
        p.add_argument(f"--{plane}", type=Path, default=None, metavar="DIR",
                       help=f"nnUNetv2_predict --save_probabilities folder of the {plane} model")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; see Out above)")
    p.add_argument("--method", choices=("product", "mean"), default="product", help="fusion rule (default product)")
    p.add_argument("--dataset", default=None,
                   help="source raw dataset whose imagesTr grids the result gets (default: the axial folder's)")
    p.add_argument("--class-probability", type=Path, default=None, metavar="DIR_OR_CSV",
                   help="per-case class-probability maps <case>.nii.gz, or a CSV case,probability: P = P_class * P")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="segmentation written as P >= threshold, in (0, 1] (default 0.5)")
    p.add_argument("--resample", choices=("linear", "nearest"), default=None,
                   help="interpolate grids that are not an axis permutation of the target (default: refuse them)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from nnunet_fracture.triplanar.plane_fusion import fuse_predictions

    prov = fuse_predictions(args.out, axial=args.axial, coronal=args.coronal, sagittal=args.sagittal,
                            method=args.method, dataset=args.dataset, class_probability=args.class_probability,
                            threshold=args.threshold, resample=args.resample, overwrite=args.overwrite)
    for warning in prov["warnings"]:
        print(f"nnunet-fracture fuse: warning: {warning}", file=sys.stderr)
    print(f"fused {prov['num_cases']} case(s) ({prov['formula']}) into {args.out}")
