"""``nnunet-fracture postprocess``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
from pathlib import Path

POSTPROCESS_DESCRIPTION = """\
Remove the specks from a model's segmentations: every connected component smaller than a volume is set to
background. A model's false positives on healthy bone are mostly islands of a few dozen voxels; a fracture it
finds is one component of hundreds.

In:
  PREDICTIONS   an nnUNetv2_predict output folder (<case>.nii.gz, with or without <case>.npz)
  the threshold, one of:
    --dataset D     the raw dataset the model was trained on (ID, DatasetXXX_NAME or folder): components under
                    --fraction x the typical volume of its labelled components (labelsTr, 26-connected,
                    nnU-Net's ignore label left out) are removed. Typical: half of all labelled voxels lie in
                    components of at most this volume (stray specks in pseudo-mask labels hardly move it).
                    For a self-training round, pass the round's own dataset.
    --min-volume V  a fixed volume in mm^3

Volumes are in mm^3 with each file's own spacing. Components are 26-connected; all foreground labels count as one
mask. nnU-Net's `nnUNetv2_determine_postprocessing` can only keep the largest component (one fracture per scan).

Out (--out DIR): the same folder with the cleaned segmentations; probabilities (.npz) and nnU-Net's json files
copied unchanged (so `evaluate`, `pseudo-masks` and `visualize` read it like the original), and
postprocessing.json: the threshold, where it came from, and the components and voxels removed per case.
"""


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "postprocess", help="remove connected components smaller than a share of the training fractures' volume",
        description=POSTPROCESS_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example (a model trained on dataset 511, e.g. self-training round 2 of `--first-id 510`):\n"
               "  nnUNetv2_predict -i new_scans/ -o pred -d 511 -c 3d_fullres -f all --save_probabilities\n"
               "  nnunet-fracture postprocess pred --dataset 511 --out pred_clean\n"
               "  nnunet-fracture evaluate pred_clean new_scans_truth/ --out report/")
    p.add_argument("predictions", type=Path, help="nnUNetv2_predict output folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; see Out above)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", default=None,
                        help="raw dataset the model was trained on: the threshold is --fraction x the typical volume "
                             "of its labelled components")
    source.add_argument("--min-volume", type=float, default=None, metavar="MM3",
                        help="remove components under this volume in mm^3")
    from nnunet_fracture.inference.small_components import DEFAULT_FRACTION

    p.add_argument("--fraction", type=float, default=None,
                   help=f"with --dataset: the share of the typical training component's volume, in (0, 1] "
                        f"(default {DEFAULT_FRACTION})")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from nnunet_fracture.dataset_conversion.source_dataset import resolve_dataset_folder
    from nnunet_fracture.inference.small_components import (DEFAULT_FRACTION, clean_by_training_labels,
                                                            clean_prediction_folder, removal_totals)

    if args.dataset is not None:
        record = clean_by_training_labels(args.predictions, args.out, resolve_dataset_folder(args.dataset),
                                          DEFAULT_FRACTION if args.fraction is None else args.fraction,
                                          args.overwrite)
    elif args.fraction is not None:
        raise ValueError("--fraction scales the volume of a --dataset's fractures; with --min-volume it means "
                         "nothing. Fix: drop --fraction, or pass --dataset instead of --min-volume.")
    else:
        record = clean_prediction_folder(args.predictions, args.out, args.min_volume, args.overwrite)
    removed, voxels = removal_totals(record)
    print(f"removed {removed} component(s) under {record['min_volume_mm3']:.1f} mm^3 ({voxels} voxels) from "
          f"{len(record['cases'])} case(s) into {args.out}")
