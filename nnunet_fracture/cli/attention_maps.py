"""``nnunet-fracture attention-maps``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_fracture.cli.checkpoint_trust import TRUST_HELP, add_trust_argument


ATTENTION_MAPS_DESCRIPTION = """\
Show where an attention U-Net looks: export the attention coefficients of every skip connection for one case, as
NIfTI volumes on the CT's own grid and as PNG pictures over the CT.

The model must have attention gates: trained with -tr nnUNetTrainerAttentionUNet (mask labels) or
-tr nnUNetTrainerWeakBBoxAttention (weak boxes). The case is preprocessed and predicted like nnUNetv2_predict does
(sliding window, one fold, no test-time mirroring); each tile's coefficients are stitched with nnU-Net's Gaussian
tile weights and mapped back to the CT's grid (resampled, uncropped, transposed back).

In:
  MODEL   the trained model folder, $nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIGURATION
  CASE    a CT file (for multi-channel models the _0000 file; the other channels are found beside it), or a case
          id such as case0, looked up in imagesTr/ (then imagesTs/) of the raw dataset the model was trained on
          ($nnUNet_raw/DatasetXXX_NAME) or of --dataset

Out (--out DIR; written to a temporary folder first, so DIR is either complete or untouched):
  attention_level<L>.nii.gz  coefficients in [0, 1] (float32), same size, spacing, origin and direction as the CT;
                             0 outside the region nnU-Net cropped away. Level 0 = the gate on the highest-resolution
                             skip (finest detail); the last level = the gate next to the bottleneck (coarse context)
  attention_level<L>.png     axial, coronal and sagittal planes through the CT's centre (or --point), coefficients
                             from yellow (low) to red (high) over the CT; below 0.02 transparent
  attention_maps.json        model, fold, checkpoint, case files, and per level the grid and min/mean/max

Open the NIfTI files together with the CT in 3D Slicer or ITK-SNAP to scroll through them.

""" + TRUST_HELP


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention-maps",
        help="export an attention U-Net's attention coefficients for one case (NIfTI on the CT grid + PNG)",
        description=ATTENTION_MAPS_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  nnunet-fracture attention-maps $nnUNet_results/Dataset501_Phantom/"
               "nnUNetTrainerWeakBBoxAttention__nnUNetPlans__3d_fullres case003 --fold 0 --out attention/case003\n"
               "  nnunet-fracture attention-maps MODEL /data/new_ct_0000.nii.gz --fold all --out attention/new_ct",
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="trained model folder (see In above)")
    p.add_argument("case", metavar="CASE", help="CT file or case id (see In above)")
    p.add_argument("--out", type=Path, required=True, help="output folder (see Out above)")
    p.add_argument("--fold", default="0", help="fold to use: 0-4 or all (default 0)")
    p.add_argument("--checkpoint", default="checkpoint_final.pth",
                   help="checkpoint file in the fold folder (default checkpoint_final.pth)")
    p.add_argument("--dataset", default=None,
                   help="raw dataset (ID, DatasetXXX_NAME or folder) to look a case id up in (default: the one the "
                        "model was trained on)")
    p.add_argument("--device", choices=("cuda", "cpu", "mps"), default=None,
                   help="where the network runs (default cuda if available, else cpu)")
    p.add_argument("--step-size", type=float, default=0.5,
                   help="sliding-window step as a fraction of the patch, as nnUNetv2_predict -step_size (default 0.5)")
    p.add_argument("--point", type=int, nargs=3, metavar=("I", "J", "K"), default=None,
                   help="CT voxel index the PNG planes go through (default: the CT's centre)")
    p.add_argument("--window", type=float, nargs=2, metavar=("LEVEL", "WIDTH"), default=(400.0, 1800.0),
                   help="CT display window in HU for the PNGs (default 400 1800, bone)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    add_trust_argument(p, "the checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from nnunet_fracture.inference.attention_maps import export_attention_maps
    from nnunet_fracture.visualization.overlay_layers import CTWindow

    prov = export_attention_maps(args.model, args.case, args.out, fold=args.fold, checkpoint=args.checkpoint,
                                 dataset=args.dataset, device=args.device, tile_step_size=args.step_size,
                                 point_ijk=args.point, window=CTWindow(*args.window), overwrite=args.overwrite,
                                 trust_checkpoints=args.trust_checkpoints)
    ranges = ", ".join(f"level {e['level']}: {e['min']:.2f}-{e['max']:.2f}" for e in prov["levels"])
    print(f"wrote {len(prov['levels'])} attention maps of {prov['case']} to {args.out} ({ranges})")
