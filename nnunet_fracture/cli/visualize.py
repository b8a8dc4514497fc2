"""``nnunet-fracture visualize``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
from pathlib import Path


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

Trust: with --training-batch, nnU-Net unpickles the preprocessed dataset's .pkl files, and a crafted .pkl can
run code. Only use it on nnUNet_preprocessed folders you trust, as with nnUNetv2_train itself.
"""


def add(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--out", type=Path, required=True,
                   help="output folder, written whole when every figure is drawn (see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out (nothing of the old report survives)")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from nnunet_fracture.io.output_folders import staged_folder
    from nnunet_fracture.visualization.html_report import read_metrics, write_report

    if args.probabilities is None and args.training_batch is None and args.metrics is None:
        raise ValueError("nothing to show. Fix: give --probabilities PRED (with --images or --raw-dataset), "
                         "--training-batch DATASET, and/or --metrics EVAL")
    if args.metrics is not None:
        read_metrics(args.metrics)  # a wrong folder fails before any drawing
    inputs = {}
    if args.probabilities is not None:
        from nnunet_fracture.visualization.prediction_figures import raw_dataset_inputs

        inputs = raw_dataset_inputs(args.raw_dataset) if args.raw_dataset is not None else {}
        for key in ("images", "boxes", "vertebrae", "ground_truth"):
            if getattr(args, key) is not None:
                inputs[key] = getattr(args, key)
        if inputs.get("images") is None:
            raise ValueError("--probabilities needs the CTs. Fix: add --images DIR or --raw-dataset DATASET")
    read = [args.probabilities, args.metrics, *(Path(p) for p in inputs.values() if p is not None)]
    with staged_folder(args.out, args.overwrite, inputs=read) as stage:
        if args.probabilities is not None:
            from nnunet_fracture.visualization.overlay_layers import CTWindow
            from nnunet_fracture.visualization.prediction_figures import visualize_predictions

            results = visualize_predictions(args.probabilities, out=stage, cases=args.cases,
                                            threshold=args.threshold, window=CTWindow(*args.window),
                                            ct_projection=args.ct_projection, mesh_format=args.mesh_format,
                                            bone_threshold=args.bone_threshold, render_3d=not args.no_3d, **inputs)
            print(f"figures of {len(results)} case(s) drawn")
        if args.training_batch is not None:
            from nnunet_fracture.visualization.training_batch import visualize_training_batches

            written = visualize_training_batches(args.training_batch, args.configuration, args.trainer, args.plans,
                                                 args.fold, stage, n_batches=args.batches)
            print(f"{len(written)} training batch figure(s) drawn")
        write_report(stage, metrics=args.metrics)
    print(f"report: {args.out / 'index.html'} (figures under {args.out})")
