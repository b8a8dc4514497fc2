"""``nnunet-fracture phantom``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
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
