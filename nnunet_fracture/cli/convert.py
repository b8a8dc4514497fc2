"""``nnunet-fracture convert``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="turn CT + fracture boxes into an nnU-Net raw dataset",
        description="Write $nnUNet_raw/DatasetID_NAME (imagesTr, labelsTr, dataset.json) from one of the "
        "supported input formats. Box numbers go to labelsTr/ (label n = box n) and boxes.json, ground-truth masks "
        "(evaluation only, never training) to groundTruthTr/, vertebra maps to vertebraeTr/. For 2D models on "
        "coronal or sagittal slices (tri-planar fusion), write a reoriented copy afterwards with "
        "`nnunet-fracture reorient DATASET --plane coronal|sagittal --dataset-id NEW_ID`.",
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
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
