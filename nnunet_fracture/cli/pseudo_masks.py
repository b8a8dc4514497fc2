"""``nnunet-fracture pseudo-masks``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_fracture.cli.round_label_arguments import add_round_label_arguments, label_options


PSEUDO_MASKS_DESCRIPTION = """\
Turn nnU-Net fracture probabilities into pseudo-masks kept inside the boxes, with an uncertainty map, ready to
check and correct in 3D Slicer or ITK-SNAP, and optionally into a new dataset for fully supervised training.

In:
  PRED       nnUNetv2_predict output folder(s) made with --save_probabilities (<case>.nii.gz + <case>.npz).
             Several folders = one per fold (e.g. -f 0 -o pred_f0, -f 1 -o pred_f1, ...): P is their mean and the
             uncertainty their per-voxel standard deviation. One folder (one fold, or a multi-fold run, which
             saves only the mean): the uncertainty is the binary entropy of P in bits.
  --dataset  the raw dataset the predictions were made from (ID, DatasetXXX_NAME or folder), written by
             `nnunet-fracture convert`: its boxes.json gives the boxes, imagesTr the geometry. The cases are
             those predicted (all, or e.g. held-out ones); every PRED folder must hold the same cases.

Out (--out DIR):
  masks/<case>.nii.gz          0/1 pseudo-mask (uint8) on the CT's grid; 0 outside every box
  probabilities/<case>.nii.gz  fused fracture probability P (float32)
  uncertainty/<case>.nii.gz    uncertainty (float32)
  pseudo_masks.csv             one row per box: threshold used, voxels kept, max P, mean uncertainty; boxes where
                               nothing was kept are marked empty - look at those first
  pseudo_masks.json            provenance: predictions, model info, rule, parameters, date, plugin version

Rules (applied to each box on its own):
  fixed     keep P >= --threshold. The default: with the default nnUNetTrainerWeakBBox it scored best on the
            quality bench (3 seeds, in-box Dice 0.376 +- 0.034, arm weak_bbox; otsu 0.358), as with the
            previous default's voxel-bag models (0.488; otsu 0.483, fraction 0.402, arms voxel_bags*).
  otsu      keep P above the box's own Otsu threshold (never below --min-threshold). Adapts to boxes where
            the model is over- or under-confident.
  fraction  keep the top --fraction of each box's voxels by P (only P >= --min-threshold). For models whose P is
            high in most of each box (the mean-bag recipe); set --fraction to roughly how much of a box the
            fracture fills (phantom boxes: 13 % on average).
Where boxes overlap, each box is thresholded on its own voxels and the mask is the union.

Refinement (--refine random_walker, the default; --refine none turns it off): each box's mask is re-drawn on the
CT by a random walker (scikit-image) seeded with the background around the box and the voxels with P >= 0.8
inside it; a refined mask filling less than 2 % or more than 30 % of its box is reset to the rule's mask. The
csv's refinement column says, per box: refined, reset, no_seed (no confident voxel to grow from), no_contrast (a
uniform CT crop), dark_lesion (not refined: --dark-lesions drew the mask) or none. On the quality bench it raised
the in-box Dice of the default recipe's model on each of 3 seeds (+0.088, +0.050, +0.026; 0.376 -> 0.431 on
average, arm solid_bags_refined), and of the previous default's voxel-bag model by less (+0.011, +0.003, +0.035).

Inside the vertebra (--inside-vertebra SHELL_MM): a box's mask keeps only voxels of the vertebra its label names
(the dataset's vertebraeTr maps, from VerSe, the RSNA segmentations or the phantom), more than SHELL_MM inside its
surface. A weak model marks the endplate's cortical shell next to a condensation band and the disc beyond it; the
vertebra map says where the fracture stops. Whether the shell belongs to a fracture is your annotators' convention
(the phantom's ground truth leaves it out): 0 keeps the whole vertebra. On the quality bench, 1.5 mm raised the
in-box Dice on each of 3 seeds (+0.129 +- 0.048 on a solid-bag model's refined masks, arm solid_bags_inside).

Dark lesions (--dark-lesions HU, with --inside-vertebra): a box whose P is higher on the darker half of its bone
(a cleft: fluid or gas, not a sclerotic band) gets as mask its bone more than HU below the bone's median HU, not
the rule's. On top of --inside-vertebra 1.5 it raised the in-box Dice on each of 3 seeds (+0.093 +- 0.061, arm
solid_bags_dark: 0.653 +- 0.074). --dark-grow 75 then adds the less dark bone touching each such mask (a cleft's
blurred flanks): +0.024 +- 0.012 on each of 3 seeds (arm solid_bags_dark_grown: 0.677 +- 0.080, the best
pseudo-masks measured). The README's ablation table has every step.
"""

PSEUDO_MASKS_EPILOG = """\
Example (data flywheel):
  for f in 0 1 2 3 4; do nnUNetv2_predict -i $nnUNet_raw/Dataset501_Phantom/imagesTr -o pred_f$f -d 501 \\
      -c 3d_fullres -f $f -tr nnUNetTrainerWeakBBox --save_probabilities; done
  nnunet-fracture pseudo-masks pred_f0 pred_f1 pred_f2 pred_f3 pred_f4 --dataset 501 --out pseudo/ \\
      --inside-vertebra 1.5 --dark-lesions 100 --dark-grow 75 --export-dataset 502 --name PhantomPseudo
  # correct pseudo/masks in 3D Slicer, copy them to labelsTr of Dataset502, then train the stock trainer:
  nnUNetv2_plan_and_preprocess -d 502 -c 3d_fullres && nnUNetv2_train 502 3d_fullres 0
"""


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pseudo-masks",
        help="box-constrained pseudo-masks + uncertainty maps from nnUNetv2_predict probabilities",
        description=PSEUDO_MASKS_DESCRIPTION, epilog=PSEUDO_MASKS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pred", type=Path, nargs="+", metavar="PRED",
                   help="nnUNetv2_predict output folder(s) with --save_probabilities; several = one per fold")
    p.add_argument("--dataset", required=True,
                   help="raw dataset predicted from: ID (e.g. 501, looked up in $nnUNet_raw), DatasetXXX_NAME or "
                        "folder; must hold boxes.json")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; see Out above)")
    p.add_argument("--rule", choices=("fixed", "otsu", "fraction"), default="fixed",
                   help="how voxels in a box are selected (see Rules above; default fixed, the best for the default "
                        "nnUNetTrainerWeakBBox on the quality bench; fraction suits models that paint whole boxes)")
    p.add_argument("--threshold", type=float, default=0.5, help="fixed rule: keep P >= this (default 0.5)")
    p.add_argument("--fraction", type=float, default=0.3,
                   help="fraction rule: share of each box's voxels kept (default 0.3)")
    p.add_argument("--min-threshold", type=float, default=0.05,
                   help="otsu and fraction rules: never keep a voxel with P below this (default 0.05)")
    p.add_argument("--export-dataset", type=int, default=None, metavar="ID",
                   help="also write $nnUNet_raw/DatasetID_NAME: the CTs with the pseudo-masks as labels "
                        "{background: 0, fracture: 1}, trainable by the stock nnUNetTrainer")
    p.add_argument("--name", default=None, help="name of the exported dataset (with --export-dataset)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out and an existing dataset with the --export-dataset ID")
    p.add_argument("--refine", choices=("none", "random_walker"), default="random_walker",
                   help="re-draw each box's mask on the CT (see Refinement above; default random_walker)")
    p.add_argument("--ignore-band", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="with --export-dataset: box voxels left out of the mask with LOW <= P < HIGH are labelled "
                        "nnU-Net's 'ignore' (2) in the exported labels, e.g. --ignore-band 0.2 0.5")
    add_round_label_arguments(p, ignore_when="with --export-dataset: ")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks

    prov = write_pseudo_masks(args.pred, args.dataset, args.out, rule=args.rule, threshold=args.threshold,
                              fraction=args.fraction, min_threshold=args.min_threshold,
                              export_dataset=args.export_dataset, export_name=args.name, overwrite=args.overwrite,
                              refine=args.refine,
                              options=label_options(args, tuple(args.ignore_band) if args.ignore_band else None))
    print(f"wrote pseudo-masks of {prov['num_cases']} cases ({prov['num_boxes']} boxes, {prov['num_empty_boxes']} "
          f"empty) to {args.out}; uncertainty: {prov['uncertainty']['kind']}"
          + (f"; {len(prov['dark_lesions']['dark_boxes'])} dark lesion(s)" if prov["dark_lesions"] else ""))
    if prov["export_dataset"]:
        print(f"wrote {prov['export_dataset']}")
