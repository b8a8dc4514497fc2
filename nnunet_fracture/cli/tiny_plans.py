"""``nnunet-fracture tiny-plans``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans

    out = write_tiny_plans(args.dataset, source_plans=args.source_plans, plans_name=args.plans_name,
                           max_features=args.features, max_patch=args.patch, batch_size=args.batch_size)
    print(f"wrote {out}")
