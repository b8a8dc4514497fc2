"""``nnunet-fracture vae-error``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_fracture.cli.checkpoint_trust import TRUST_HELP, add_trust_argument


VAE_ERROR_DESCRIPTION = """\
Add the VAE anomaly prior as an input channel: the reconstruction error of a VAE trained on normal vertebrae only
(nnUNetv2_train ID 3d_fullres FOLD -tr nnUNetTrainerNormalVAE) is high where tissue looks abnormal, e.g. at
fractures. The error is computed over whole volumes with nnU-Net's sliding window (gaussian blending), brought back
to each CT's exact grid, and normalised: E = clip(error / scale, 0, 1), where scale is the --percentile-th
percentile of the error over normal tissue (voxels outside every box of the training cases).

Two modes:
  --dataset ID --out-dataset ID2   a new raw dataset: everything of ID (CT _0000, labelsTr, boxes.json,
                                   groundTruthTr, imagesTs ...) plus E as channel _0001 of imagesTr and imagesTs,
                                   named "noNorm" in dataset.json (nnU-Net leaves it unnormalised); the scale and
                                   the model are recorded under nnunet_fracture.vae_error. Plan and train ID2 with the
                                   stock commands; nnUNetTrainerWeakBBox then also uses E for its consistency loss L4
                                   when NNUNET_FRACTURE_SETTINGS sets lambda_consistency > 0.
  --images DIR --out DIR           new images (<case>_0000.nii.gz) for nnUNetv2_predict: copies them and adds E,
                                   scaled like the training dataset (--scale-from ID2, or --scale C).

""" + TRUST_HELP

VAE_ERROR_EPILOG = """\
Example:
  nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerNormalVAE
  nnunet-fracture vae-error --vae $nnUNet_results/Dataset501_Phantom/nnUNetTrainerNormalVAE__nnUNetPlans__3d_fullres \\
      --dataset 501 --out-dataset 511
  nnUNetv2_plan_and_preprocess -d 511 -c 3d_fullres --verify_dataset_integrity
  NNUNET_FRACTURE_SETTINGS="lambda_consistency=0.1" nnUNetv2_train 511 3d_fullres 0 -tr nnUNetTrainerWeakBBox
  nnunet-fracture vae-error --vae ... --images new_cts/ --out new_cts_with_E/ --scale-from 511
  nnUNetv2_predict -i new_cts_with_E/ -o pred/ -d 511 -c 3d_fullres -f 0 -tr nnUNetTrainerWeakBBox --save_probabilities
"""


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vae-error",
        help="add a VAE's normalised reconstruction-error map as input channel _0001 (the anomaly prior)",
        description=VAE_ERROR_DESCRIPTION, epilog=VAE_ERROR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--vae", type=Path, required=True,
                   help="model folder of nnUNetTrainerNormalVAE (holds plans.json and fold_X/)")
    p.add_argument("--dataset", default=None, help="source raw dataset: ID, DatasetXXX_NAME or folder")
    p.add_argument("--out-dataset", type=int, default=None, help="nnU-Net ID of the new dataset (with --dataset)")
    p.add_argument("--name", default=None, help="name of the new dataset (default <source name>VAE)")
    p.add_argument("--images", type=Path, default=None,
                   help="folder of new images <case>_0000.nii.gz (instead of --dataset)")
    p.add_argument("--out", type=Path, default=None, help="output folder for --images")
    p.add_argument("--scale-from", default=None,
                   help="with --images: the dataset written by --dataset mode, whose recorded scale is used")
    p.add_argument("--scale", type=float, default=None, help="with --images: the scale itself")
    p.add_argument("--folds", nargs="+", default=None, help="VAE folds to average (default: all trained folds)")
    p.add_argument("--checkpoint", default="checkpoint_final.pth",
                   help="checkpoint file (default checkpoint_final.pth)")
    p.add_argument("--percentile", type=float, default=99.0,
                   help="percentile of the normal-tissue error that maps to E = 1 (default 99)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    p.add_argument("--mirror", action="store_true", help="average mirrored passes too (slower)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset ID / non-empty --out")
    add_trust_argument(p, "the VAE checkpoints")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import torch

    from nnunet_fracture.inference.vae_error import write_error_dataset, write_error_images

    device = torch.device(args.device) if args.device else None
    if (args.dataset is None) == (args.images is None):
        raise ValueError("give either --dataset ID --out-dataset ID2 (a training dataset) or --images DIR --out DIR "
                         "(new images for nnUNetv2_predict)")
    if args.dataset is not None:
        if args.out_dataset is None:
            raise ValueError("--dataset needs --out-dataset ID2, the ID of the dataset to write")
        out = write_error_dataset(args.dataset, args.out_dataset, args.vae, name=args.name, folds=args.folds,
                                  checkpoint=args.checkpoint, percentile=args.percentile, overwrite=args.overwrite,
                                  device=device, mirror=args.mirror, trust_checkpoints=args.trust_checkpoints)
        print(f"wrote {out}; plan it with: nnUNetv2_plan_and_preprocess -d {args.out_dataset} -c 3d_fullres "
              f"--verify_dataset_integrity")
        return
    if args.out is None:
        raise ValueError("--images needs --out DIR")
    prov = write_error_images(args.images, args.out, args.vae, scale=args.scale, scale_from=args.scale_from,
                              folds=args.folds, checkpoint=args.checkpoint, overwrite=args.overwrite, device=device,
                              mirror=args.mirror, trust_checkpoints=args.trust_checkpoints)
    print(f"wrote {len(prov['cases'])} case(s) with the error channel _{prov['channel']:04d} to {args.out}")
