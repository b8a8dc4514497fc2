"""``nnunet-fracture <verb>``: the plugin's single command-line entry point.

Each verb's arguments are declared here; the work is done by plain functions in the package, imported only
when their verb runs so that ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Vertebral fracture segmentation from bounding boxes, on top of nnU-Net v2.

Typical flow:
  nnunet-fracture phantom /data/phantom --cases 10 --seed 0      # or your own CT + boxes.csv
  nnunet-fracture convert generic /data/phantom --dataset-id 501 --name Phantom --weak mask
  nnUNetv2_plan_and_preprocess -d 501 -c 3d_fullres --verify_dataset_integrity
  export nnUNet_extTrainer=$(nnunet-fracture trainer-path)
  nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerFracture
  nnUNetv2_predict -i IN -o OUT -d 501 -c 3d_fullres -f 0 -tr nnUNetTrainerFracture --save_probabilities
  nnunet-fracture evaluate OUT $nnUNet_raw/Dataset501_Phantom/groundTruthTr --out report/
"""


def _add_phantom(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantom",
        help="write synthetic vertebra CT phantoms with known fracture masks (generic format)",
        description="Write N synthetic spine CTs (T4-L5, VerSe label numbers) with compression/wedge and "
        "cleft fractures, their ground-truth masks, vertebra label maps and loose boxes, in the generic "
        "input format (images/, masks/, vertebrae/, boxes.csv). The same seed gives byte-identical files.",
    )
    p.add_argument("out", type=Path, help="output folder (created)")
    p.add_argument("--cases", type=int, default=10, help="number of cases (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                   help="voxel spacing in mm, e.g. 0.8 0.8 2.5 for thick axial slices (default isotropic)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_run_phantom)


def _run_phantom(args: argparse.Namespace) -> None:
    from nnunet_fracture.dataset_conversion.phantom import write_phantom

    out = write_phantom(args.out, n_cases=args.cases, seed=args.seed,
                        spacing=tuple(args.spacing) if args.spacing else None, overwrite=args.overwrite)
    print(f"wrote {args.cases} phantom cases to {out}")


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="turn CT + fracture boxes into an nnU-Net raw dataset",
        description="Write $nnUNet_raw/DatasetID_NAME (imagesTr, labelsTr, dataset.json) from one of the "
        "supported input formats. Box numbers go to labelsTr/ (label n = box n) and boxes.json, ground-truth masks "
        "(evaluation only, never training) to groundTruthTr/, vertebra maps to vertebraeTr/.",
    )
    fmt = p.add_subparsers(dest="format", required=True, metavar="FORMAT")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset number (1-999)")
        q.add_argument("--name", required=True, help="dataset name (letters, digits, _ and -)")
        q.add_argument("--weak", choices=("box", "slice", "mask"), default="box",
                       help="label mode: box = 1 inside each box; slice = whole axial slices of each box's "
                            "z-range; mask = the ground-truth masks (fully supervised baseline). Default box")
        q.add_argument("--crop-vertebrae", action="store_true",
                       help="write one case per vertebra (needs vertebra label maps), cropped with its "
                            "neighbours as context")
        q.add_argument("--context", type=int, default=1,
                       help="neighbouring vertebrae kept on each side with --crop-vertebrae (default 1)")
        q.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this ID")

    g = fmt.add_parser("generic", help="images/ + boxes.csv (see README: 'Generic input format')",
                       description="Read INPUT/images/<case>.nii.gz|.nrrd|.mha (CT in HU), optional "
                       "INPUT/masks/<case>.* and INPUT/vertebrae/<case>.*, and INPUT/boxes.csv with columns "
                       "case_id,x_min,y_min,z_min,x_max,y_max,z_max,space[,label][,grade]; space is 'world' "
                       "(mm, LPS) or 'voxel' (i,j,k inclusive). A case without rows is fracture-free.")
    g.add_argument("input", type=Path, help="folder in the generic format")
    common(g)

    v = fmt.add_parser("verse", help="VerSe 2019/2020 BIDS layout + a fracture grade table",
                       description="Read ROOT/rawdata/sub-*/*_ct.nii.gz and ROOT/derivatives/sub-*/"
                       "*_seg-vert_msk.nii.gz. Every vertebra with Genant grade >= --min-grade in GRADES "
                       "(CSV: subject,vertebra,grade; vertebra as label number or name such as L1) becomes a "
                       "box from its mask.")
    v.add_argument("root", type=Path, help="VerSe dataset root")
    v.add_argument("--grades", type=Path, required=True, help="CSV with subject,vertebra,grade")
    v.add_argument("--min-grade", type=int, default=1, help="smallest Genant grade that counts (default 1)")
    common(v)

    r = fmt.add_parser("rsna", help="RSNA-2022 cervical spine DICOM + train_bounding_boxes.csv",
                       description="Read ROOT/train_images/<StudyInstanceUID>/*.dcm and "
                       "ROOT/train_bounding_boxes.csv (StudyInstanceUID,x,y,width,height,slice_number). 2D boxes "
                       "on consecutive slices merge into one 3D box. Studies listed in train.csv with "
                       "patient_overall = 0 become fracture-free cases; ROOT/segmentations/<uid>.nii, where "
                       "present, become vertebra label maps.")
    r.add_argument("root", type=Path, help="RSNA-2022 competition folder")
    r.add_argument("--max-cases", type=int, default=None, help="convert at most this many studies")
    common(r)
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> None:
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

    if args.format == "generic":
        from nnunet_fracture.dataset_conversion.generic import read_generic
        cases = read_generic(args.input)
    elif args.format == "verse":
        from nnunet_fracture.dataset_conversion.verse import read_verse
        cases = read_verse(args.root, args.grades, min_grade=args.min_grade)
    else:
        from nnunet_fracture.dataset_conversion.rsna import read_rsna
        cases = read_rsna(args.root, max_cases=args.max_cases)
    out = write_raw_dataset(cases, dataset_id=args.dataset_id, name=args.name, weak=args.weak,
                            crop_vertebrae=args.crop_vertebrae, context=args.context,
                            overwrite=args.overwrite, source_format=args.format)
    print(f"wrote {out}")


def _add_trainer_path(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trainer-path",
        help="print the folder to export as nnUNet_extTrainer",
        description="Print the folder that lets the stock nnUNetv2_train / nnUNetv2_predict find this "
        "plugin's trainers. Use: export nnUNet_extTrainer=$(nnunet-fracture trainer-path)",
    )
    p.set_defaults(func=_run_trainer_path)


def _run_trainer_path(args: argparse.Namespace) -> None:
    from nnunet_fracture.trainer_discovery import trainer_path

    print(trainer_path())


def _add_tiny_plans(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tiny-plans",
        help="write nnUNetPlansTiny: default preprocessed data, tiny network and patch (CPU smoke runs)",
        description="Copy DATASET's nnUNetPlans.json into nnUNetPlansTiny.json with at most --features "
        "features per stage, patches of at most --patch voxels per axis and as many stages as the patch "
        "allows. The preprocessed data are shared, so no new preprocessing is needed: train with "
        "'nnUNetv2_train DATASET 3d_fullres FOLD -p nnUNetPlansTiny'.",
    )
    p.add_argument("dataset", help="dataset ID or name, e.g. 501 or Dataset501_Phantom")
    p.add_argument("--features", type=int, default=16, help="largest number of features per stage (default 16)")
    p.add_argument("--patch", type=int, default=32, help="largest patch edge in voxels (default 32)")
    p.add_argument("--batch-size", type=int, default=2, help="batch size (default 2)")
    p.add_argument("--source-plans", default="nnUNetPlans", help="plans to start from (default nnUNetPlans)")
    p.add_argument("--plans-name", default="nnUNetPlansTiny", help="name of the written plans")
    p.set_defaults(func=_run_tiny_plans)


def _run_tiny_plans(args: argparse.Namespace) -> None:
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans

    out = write_tiny_plans(args.dataset, source_plans=args.source_plans, plans_name=args.plans_name,
                           max_features=args.features, max_patch=args.patch, batch_size=args.batch_size)
    print(f"wrote {out}")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Dice against ground-truth masks, metrics.csv, summary.json and overlay PNGs",
        description="Compare an nnU-Net prediction folder (masks, and probabilities from "
        "--save_probabilities) with a folder of ground-truth masks of the same geometry.",
    )
    p.add_argument("pred", type=Path, help="nnU-Net prediction folder")
    p.add_argument("gt", type=Path, help="folder of ground-truth masks (<case>.nii.gz)")
    p.add_argument("--out", type=Path, required=True, help="report folder (created)")
    p.add_argument("--images", type=Path, default=None,
                   help="folder with the CTs (<case>_0000.nii.gz) for overlay figures")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from nnunet_fracture.evaluation.report import evaluate_folder

    summary = evaluate_folder(args.pred, args.gt, args.out, images=args.images)
    print(f"mean Dice {summary['mean_dice']:.4f} over {summary['n_cases']} cases; report in {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-fracture", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from nnunet_fracture import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add in (_add_phantom, _add_convert, _add_trainer_path, _add_tiny_plans, _add_evaluate):
        add(sub)
    return parser


# verbs after which the next step is usually nnUNetv2_train / nnUNetv2_predict with a plugin trainer
_BEFORE_TRAINING = ("convert", "tiny-plans")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        print(f"nnunet-fracture {args.verb}: error: {e}", file=sys.stderr)
        return 1
    if args.verb in _BEFORE_TRAINING:
        from nnunet_fracture.environment import ext_trainer_problem

        problem = ext_trainer_problem()
        if problem:
            print(f"nnunet-fracture {args.verb}: note: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
