"""``nnunet-fracture reorient``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse


REORIENT_DESCRIPTION = """\
Write a copy of a raw dataset whose arrays are permuted so that nnU-Net's 2d configuration trains on coronal or
sagittal slices (tri-planar fusion: one 2D model per plane, fused with `nnunet-fracture fuse`).

Every image file (imagesTr, all channels; labelsTr; groundTruthTr; vertebraeTr; ...) gets the same permutation of
its index axes, chosen per case so that the new slowest axis k (nnU-Net's first array axis) is the index axis most
aligned with the plane's normal (coronal: y, sagittal: x, axial: z). Spacing and direction columns are permuted
with the axes and the origin is kept, so every voxel keeps its physical position (the direction may become
left-handed; ITK, NIfTI and nnU-Net handle it). boxes.json lo/hi are permuted, world coordinates kept;
dataset.json records {reoriented_from, plane, axis_order}. Predictions made on the copy map back exactly.

nnU-Net's transpose: its planner puts the axis with the LARGEST target spacing first and slices 2d along it. For
thick-slice CT (e.g. 0.8 x 0.8 x 2.5 mm) that is the axial axis in any array order, so planned the default way a
coronal copy still trains AXIAL slices (transpose_forward [1, 0, 2]). What works: plan the copy with the printed
command, whose -overwrite_target_spacing gives the first array axis the largest target spacing
(transpose_forward [0, 1, 2]; the 2d spacing stays the plane's native in-plane spacing). It also coarsens
3d_fullres of that plans file, hence its own plans name and -c 2d only.
"""

REORIENT_EPILOG = """\
Example (tri-planar, source dataset 501 with thick axial slices):
  nnunet-fracture reorient 501 --plane coronal --dataset-id 502
  nnunet-fracture reorient 501 --plane sagittal --dataset-id 503
  nnUNetv2_plan_and_preprocess -d 501 -c 2d --verify_dataset_integrity      # axial model: stock planning
  nnUNetv2_plan_and_preprocess -d 502 -c 2d --verify_dataset_integrity \\
      -overwrite_target_spacing 2.5 2.5 0.8 -overwrite_plans_name nnUNetPlans_coronal   # as printed
  nnUNetv2_train 502 2d 0 -p nnUNetPlans_coronal                            # likewise 503, sagittal
"""


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reorient",
        help="copy a raw dataset with permuted axes so nnU-Net's 2d trains on coronal or sagittal slices",
        description=REORIENT_DESCRIPTION, epilog=REORIENT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="source raw dataset: ID (e.g. 501), DatasetXXX_NAME or folder")
    p.add_argument("--plane", choices=("coronal", "sagittal", "axial"), required=True,
                   help="slices the 2d model should see (axial: for datasets whose slice axis is not the thickest)")
    p.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset number of the copy (1-999)")
    p.add_argument("--name", default=None, help="dataset name of the copy (default <source name>_<plane>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this ID")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import json

    from nnunet_fracture.triplanar.reoriented_copies import write_reoriented_dataset

    out = write_reoriented_dataset(args.source, args.plane, args.dataset_id, name=args.name, overwrite=args.overwrite)
    info = json.loads((out / "dataset.json").read_text())["nnunet_fracture"]["reorientation"]
    order = info["axis_order"] if info["axis_order"] is not None else "per case (see dataset.json)"
    print(f"wrote {out} (axis order {order})")
    print(f"plan it for {args.plane} 2D slices with:\n  {info['nnunet_2d_planning']}\n"
          f"then train with: nnUNetv2_train {args.dataset_id} 2d FOLD -p {info['nnunet_2d_plans_name']}")
