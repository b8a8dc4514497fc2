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

Typical flow (boxes -> weak model -> pseudo-masks -> strong model):
  nnunet-fracture phantom /data/phantom --cases 10 --seed 0      # or your own CT + boxes.csv
  nnunet-fracture convert generic /data/phantom --dataset-id 501 --name Phantom --weak box
  nnUNetv2_plan_and_preprocess -d 501 -c 3d_fullres --verify_dataset_integrity
  export nnUNet_extTrainer=$(nnunet-fracture trainer-path)
  nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerWeakBBox      # and folds 1-4
  nnUNetv2_predict -i $nnUNet_raw/Dataset501_Phantom/imagesTr -o pred_f0 -d 501 -c 3d_fullres -f 0 \
      -tr nnUNetTrainerWeakBBox --save_probabilities             # one folder per fold
  nnunet-fracture pseudo-masks pred_f0 pred_f1 --dataset 501 --out pseudo/ \
      --export-dataset 502 --name PhantomPseudo                  # correct the masks, then train 502 stock
  nnunet-fracture evaluate pred_f0 $nnUNet_raw/Dataset501_Phantom/groundTruthTr --out report/
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
    p.add_argument("--contrast", choices=("standard", "subtle"), default="standard",
                   help="standard (default): condensation bands clearly denser than the bone around them, ground "
                        "truth = what a reader sees; subtle: the harder phantom of version 1 (fainter bands, masks "
                        "reaching 1 mm into the healthy-looking endplate). Each fracture kind's contrast-to-noise "
                        "ratio is printed and written to phantom.json")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_run_phantom)


def _run_phantom(args: argparse.Namespace) -> None:
    from nnunet_fracture.dataset_conversion.phantom import write_phantom

    import json

    from nnunet_fracture.dataset_conversion.phantom_contrast import format_contrast

    out = write_phantom(args.out, n_cases=args.cases, seed=args.seed,
                        spacing=tuple(args.spacing) if args.spacing else None, overwrite=args.overwrite,
                        contrast=args.contrast)
    summary = json.loads((out / "phantom.json").read_text(encoding="utf-8"))["fracture_contrast"]
    print(f"wrote {args.cases} phantom cases to {out}")
    print(f"fracture contrast ({args.contrast}; CNR against the healthy cancellous bone of the same vertebra): "
          f"{format_contrast(summary)}")


def _add_convert(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--out", type=Path, required=True, help="report folder (created)")
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
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from nnunet_fracture.evaluation.report import evaluate_folder

    summary = evaluate_folder(args.pred, args.gt, args.out, images=args.images, boxes=args.boxes,
                              vertebrae=args.vertebrae, threshold=args.threshold,
                              vertebra_min_voxels=args.vertebra_min_voxels)
    case_auc = summary["detection"]["case"]["roc_auc"]
    print(f"mean Dice {summary['mean_dice']:.4f} over {summary['n_cases']} cases; case-level AUC "
          f"{'n/a' if case_auc is None else f'{case_auc:.3f}'}; report in {args.out}")


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
  fixed     keep P >= --threshold. Predictable; use when the model's probabilities are well calibrated.
  otsu      keep P above the box's own Otsu threshold (never below --min-threshold). Adapts to boxes where
            the model is over- or under-confident.
  fraction  keep the top --fraction of each box's voxels by P (only P >= --min-threshold). The default: it
            scored best in benchmarks/weak_vs_full.py, where a weak model's P is high in most of each box;
            set --fraction to roughly how much of a box the fracture fills (phantom boxes: 13 % on average).
Where boxes overlap, each box is thresholded on its own voxels and the mask is the union.
"""

PSEUDO_MASKS_EPILOG = """\
Example (data flywheel):
  for f in 0 1 2 3 4; do nnUNetv2_predict -i $nnUNet_raw/Dataset501_Phantom/imagesTr -o pred_f$f -d 501 \\
      -c 3d_fullres -f $f -tr nnUNetTrainerWeakBBox --save_probabilities; done
  nnunet-fracture pseudo-masks pred_f0 pred_f1 pred_f2 pred_f3 pred_f4 --dataset 501 --out pseudo/ \\
      --rule otsu --export-dataset 502 --name PhantomPseudo
  # correct pseudo/masks in 3D Slicer, copy them to labelsTr of Dataset502, then train the stock trainer:
  nnUNetv2_plan_and_preprocess -d 502 -c 3d_fullres && nnUNetv2_train 502 3d_fullres 0
"""


def _add_pseudo_masks(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--rule", choices=("fixed", "otsu", "fraction"), default="fraction",
                   help="how voxels in a box are selected (see Rules above; default fraction, the best rule in "
                   "benchmarks/weak_vs_full.py)")
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
    p.set_defaults(func=_run_pseudo_masks)


def _run_pseudo_masks(args: argparse.Namespace) -> None:
    from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks

    prov = write_pseudo_masks(args.pred, args.dataset, args.out, rule=args.rule, threshold=args.threshold,
                              fraction=args.fraction, min_threshold=args.min_threshold,
                              export_dataset=args.export_dataset, export_name=args.name, overwrite=args.overwrite)
    print(f"wrote pseudo-masks of {prov['num_cases']} cases ({prov['num_boxes']} boxes, {prov['num_empty_boxes']} "
          f"empty) to {args.out}; uncertainty: {prov['uncertainty']['kind']}")
    if prov["export_dataset"]:
        print(f"wrote {prov['export_dataset']}")


VISUALIZE_DESCRIPTION = """\
Figures that show what a model predicted and what it was trained on, tied together in OUT/index.html.

Predictions (--probabilities PRED with --images DIR, or --raw-dataset DATASET):
  OUT/cases/<case>/<case>_box<n>.png   axial, coronal, sagittal heat map of the fracture probability on the CT
                                       through the centre of box n (box outlines cyan, ground truth lime)
  OUT/cases/<case>/<case>_max.png      the same through the most probable voxel
  OUT/cases/<case>/<case>_mip.png      probability MIP over the CT projection along each axis
  OUT/cases/<case>/<case>_3d.png       probability >= --threshold in red inside the bone (vertebra label map, or
                                       CT >= --bone-threshold HU), front and left views, world mm
  OUT/cases/<case>/<case>_fracture.stl and <case>_bone.stl (or .ply): surfaces in world mm, LPS (tagged
                                       SPACE=LPS, as 3D Slicer expects): drag them into Slicer with the CT
  OUT/cases/<case>/case.json           the numbers behind the figures
  PRED is an nnUNetv2_predict folder: <case>.npz (--save_probabilities) gives the heat map; without it the
  segmentation <case>.nii.gz is shown as 0/1.

Training batches (--training-batch DATASET):
  OUT/training_batches/batch_<n>.png   augmented batches from the trainer exactly as nnUNetv2_train builds it
                                       (on the CPU), image with the full-resolution target in colour per label
                                       value (box numbers of a weak-box dataset differ in colour)

Report: OUT/index.html links every PNG and mesh in OUT, grouped by case; with --metrics EVAL (the --out folder of
`nnunet-fracture evaluate`) it adds summary.json, metrics.csv and the evaluation figures.
"""


def _add_visualize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "visualize",
        help="heat-map views, MIPs, 3D renderings, Slicer meshes, training-batch pictures and an HTML report",
        description=VISUALIZE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  nnunet-fracture visualize --probabilities pred/ --raw-dataset 501 --out figs/ --metrics report/\n"
               "  nnunet-fracture visualize --probabilities pred/ --images imagesTs/ --out figs/ --cases c01 c07\n"
               "  nnunet-fracture visualize --training-batch 501 --configuration 3d_fullres \\\n"
               "      --trainer nnUNetTrainerFracture --plans nnUNetPlansTiny --fold 0 --out figs/ --batches 3",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created; index.html is rebuilt)")
    pred = p.add_argument_group("predictions")
    pred.add_argument("--probabilities", type=Path, default=None, metavar="PRED",
                      help="nnUNetv2_predict output folder (<case>.npz from --save_probabilities, <case>.nii.gz)")
    pred.add_argument("--raw-dataset", default=None, metavar="DATASET",
                      help="a dataset written by `nnunet-fracture convert` (folder, ID or DatasetXXX_NAME): its "
                           "imagesTr, boxes.json, vertebraeTr and groundTruthTr are used unless given below")
    pred.add_argument("--images", type=Path, default=None, help="folder of CTs <case>_0000.nii.gz")
    pred.add_argument("--boxes", type=Path, default=None, help="boxes.json of the converted dataset")
    pred.add_argument("--vertebrae", type=Path, default=None,
                      help="folder of vertebra label maps <case>.nii.gz (bone for the 3D view)")
    pred.add_argument("--ground-truth", type=Path, default=None,
                      help="folder of ground-truth fracture masks <case>.nii.gz (outlined in lime)")
    pred.add_argument("--cases", nargs="+", default=None, help="only these cases (default: every predicted case)")
    pred.add_argument("--threshold", type=float, default=0.5,
                      help="fracture where probability >= threshold, for the 3D view and meshes (default 0.5)")
    pred.add_argument("--window", type=float, nargs=2, metavar=("LEVEL", "WIDTH"), default=(400.0, 1800.0),
                      help="CT window in HU (default 400 1800, bone)")
    pred.add_argument("--ct-projection", choices=("max", "mean"), default="max",
                      help="CT behind the probability MIP: max (bone, default) or mean (radiograph-like)")
    pred.add_argument("--mesh-format", choices=("stl", "ply"), default="stl",
                      help="surface files: binary STL (default) or ASCII PLY")
    pred.add_argument("--bone-threshold", type=float, default=200.0,
                      help="HU level of the bone surface for cases without a vertebra label map (default 200)")
    pred.add_argument("--no-3d", action="store_true", help="skip the 3D rendering and the meshes (faster)")
    batch = p.add_argument_group("training batches")
    batch.add_argument("--training-batch", default=None, metavar="DATASET",
                       help="dataset ID or name: save augmented training batches of this dataset")
    batch.add_argument("--configuration", default="3d_fullres", help="nnU-Net configuration (default 3d_fullres)")
    batch.add_argument("--trainer", default="nnUNetTrainer",
                       help="trainer class, found like nnUNetv2_train -tr does (default nnUNetTrainer)")
    batch.add_argument("--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    batch.add_argument("--fold", default="0", help="fold (0-4 or all; default 0)")
    batch.add_argument("--batches", type=int, default=3, help="number of batches (default 3)")
    p.add_argument("--metrics", type=Path, default=None, metavar="EVAL",
                   help="output folder of `nnunet-fracture evaluate`: metrics and figures go into the report")
    p.set_defaults(func=_run_visualize)


def _run_visualize(args: argparse.Namespace) -> None:
    from nnunet_fracture.visualization.html_report import read_metrics, write_report

    if args.probabilities is None and args.training_batch is None and args.metrics is None:
        raise ValueError("nothing to show. Fix: give --probabilities PRED (with --images or --raw-dataset), "
                         "--training-batch DATASET, and/or --metrics EVAL")
    if args.metrics is not None:
        read_metrics(args.metrics)  # a wrong folder fails before any drawing
    if args.probabilities is not None:
        from nnunet_fracture.visualization.overlay_layers import CTWindow
        from nnunet_fracture.visualization.prediction_figures import raw_dataset_inputs, visualize_predictions

        inputs = raw_dataset_inputs(args.raw_dataset) if args.raw_dataset is not None else {}
        for key in ("images", "boxes", "vertebrae", "ground_truth"):
            if getattr(args, key) is not None:
                inputs[key] = getattr(args, key)
        if inputs.get("images") is None:
            raise ValueError("--probabilities needs the CTs. Fix: add --images DIR or --raw-dataset DATASET")
        results = visualize_predictions(args.probabilities, out=args.out, cases=args.cases, threshold=args.threshold,
                                        window=CTWindow(*args.window), ct_projection=args.ct_projection,
                                        mesh_format=args.mesh_format, bone_threshold=args.bone_threshold,
                                        render_3d=not args.no_3d, **inputs)
        print(f"wrote figures of {len(results)} case(s) to {args.out / 'cases'}")
    if args.training_batch is not None:
        from nnunet_fracture.visualization.training_batch import visualize_training_batches

        written = visualize_training_batches(args.training_batch, args.configuration, args.trainer, args.plans,
                                             args.fold, args.out, n_batches=args.batches)
        print(f"wrote {len(written)} training batch figure(s) to {args.out / 'training_batches'}")
    print(f"report: {write_report(args.out, metrics=args.metrics)}")


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


def _add_reorient(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_run_reorient)


def _run_reorient(args: argparse.Namespace) -> None:
    import json

    from nnunet_fracture.dataset_conversion.reorient import write_reoriented_dataset

    out = write_reoriented_dataset(args.source, args.plane, args.dataset_id, name=args.name, overwrite=args.overwrite)
    info = json.loads((out / "dataset.json").read_text())["nnunet_fracture"]["reorientation"]
    order = info["axis_order"] if info["axis_order"] is not None else "per case (see dataset.json)"
    print(f"wrote {out} (axis order {order})")
    print(f"plan it for {args.plane} 2D slices with:\n  {info['nnunet_2d_planning']}\n"
          f"then train with: nnUNetv2_train {args.dataset_id} 2d FOLD -p {info['nnunet_2d_plans_name']}")


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


def _add_fuse(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_run_fuse)


def _run_fuse(args: argparse.Namespace) -> None:
    from nnunet_fracture.inference.fusion import fuse_predictions

    prov = fuse_predictions(args.out, axial=args.axial, coronal=args.coronal, sagittal=args.sagittal,
                            method=args.method, dataset=args.dataset, class_probability=args.class_probability,
                            threshold=args.threshold, resample=args.resample, overwrite=args.overwrite)
    for warning in prov["warnings"]:
        print(f"nnunet-fracture fuse: warning: {warning}", file=sys.stderr)
    print(f"fused {prov['num_cases']} case(s) ({prov['formula']}) into {args.out}")


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
"""


def _add_attention_maps(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_run_attention_maps)


def _run_attention_maps(args: argparse.Namespace) -> None:
    from nnunet_fracture.inference.attention_maps import export_attention_maps
    from nnunet_fracture.visualization.overlay_layers import CTWindow

    prov = export_attention_maps(args.model, args.case, args.out, fold=args.fold, checkpoint=args.checkpoint,
                                 dataset=args.dataset, device=args.device, tile_step_size=args.step_size,
                                 point_ijk=args.point, window=CTWindow(*args.window), overwrite=args.overwrite)
    ranges = ", ".join(f"level {e['level']}: {e['min']:.2f}-{e['max']:.2f}" for e in prov["levels"])
    print(f"wrote {len(prov['levels'])} attention maps of {prov['case']} to {args.out} ({ranges})")


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
"""

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


def _add_vae_error(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_run_vae_error)


def _run_vae_error(args: argparse.Namespace) -> None:
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
                                  device=device, mirror=args.mirror)
        print(f"wrote {out}; plan it with: nnUNetv2_plan_and_preprocess -d {args.out_dataset} -c 3d_fullres "
              f"--verify_dataset_integrity")
        return
    if args.out is None:
        raise ValueError("--images needs --out DIR")
    prov = write_error_images(args.images, args.out, args.vae, scale=args.scale, scale_from=args.scale_from,
                              folds=args.folds, checkpoint=args.checkpoint, overwrite=args.overwrite, device=device,
                              mirror=args.mirror)
    print(f"wrote {len(prov['cases'])} case(s) with the error channel _{prov['channel']:04d} to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-fracture", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from nnunet_fracture import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add in (_add_phantom, _add_convert, _add_trainer_path, _add_tiny_plans, _add_evaluate):
        add(sub)
    _add_pseudo_masks(sub)
    _add_visualize(sub)
    _add_reorient(sub)
    _add_fuse(sub)
    _add_vae_error(sub)
    _add_attention_maps(sub)
    return parser


# verbs after which the next step is usually nnUNetv2_train / nnUNetv2_predict with a plugin trainer
_BEFORE_TRAINING = ("convert", "tiny-plans", "reorient")


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
