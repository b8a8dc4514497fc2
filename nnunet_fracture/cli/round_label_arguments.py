"""The pseudo-mask options that ``pseudo-masks`` and ``self-train`` share: which box voxels a round's labels keep,
and which become nnU-Net's 'ignore'. Declared once, so both verbs spell and explain them alike."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # the CLI imports the inference modules only when a verb runs (a fast --help)
    from nnunet_fracture.inference.label_options import LabelOptions


def add_round_label_arguments(p: argparse.ArgumentParser, ignore_when: str = "") -> None:
    """Add ``--ignore-ring``, ``--ignore-unsure-boxes``, ``--ignore-faint-boxes``, ``--inside-vertebra`` and
    ``--dark-lesions``, ``--dark-grow`` and ``--ignore-dark-margin`` to ``p``.

    Args:
        ignore_when: prefix of the ignore options' help, e.g. ``"with --export-dataset: "``.
    """
    p.add_argument("--ignore-ring", type=int, default=0, metavar="VOXELS",
                   help=f"{ignore_when}each pseudo-mask's outer VOXELS voxels are labelled 'ignore' too (default 0: "
                        "none; a box whose mask would vanish keeps it)")
    p.add_argument("--ignore-unsure-boxes", type=float, default=0.0, metavar="SHARE",
                   help=f"{ignore_when}this share of all boxes, those whose mask has the lowest mean P (an empty one "
                        "counts as 0), is 'ignore' whole (default 0: none), e.g. 0.4")
    p.add_argument("--ignore-faint-boxes", type=float, default=0.0, metavar="HU",
                   help=f"{ignore_when}boxes whose mask's median HU differs from the rest of the box (inside its "
                        "vertebra with --inside-vertebra) by less than HU, either way, are 'ignore' whole - a mask "
                        "that looks like the bone around it marks nothing visible (default 0: none), e.g. 100")
    p.add_argument("--inside-vertebra", type=float, default=None, metavar="SHELL_MM",
                   help="keep only voxels of the vertebra each box names (its label, e.g. L1) lying more than "
                        "SHELL_MM inside it, from the dataset's vertebraeTr maps: 0 clips to the vertebra, 1.5 also "
                        "leaves out the cortical shell of a 1.5 mm CT (`nnunet-fracture pseudo-masks --help`, Inside "
                        "the vertebra; default: off)")
    p.add_argument("--dark-lesions", type=float, default=0.0, metavar="HU",
                   help="with --inside-vertebra: a box whose P is higher on the darker half of its bone (a cleft, "
                        "not a sclerotic band) gets as mask the bone more than HU below the bone's median HU "
                        "(default 0: off), e.g. 100")
    p.add_argument("--dark-grow", type=float, default=0.0, metavar="HU",
                   help="with --dark-lesions: each dark mask also takes the bone more than HU below the median that "
                        "touches it (hysteresis: a blurred cleft's flanks, not isolated noise; default 0: the core "
                        "only), e.g. 75")
    p.add_argument("--ignore-dark-margin", type=int, default=0, metavar="VOXELS",
                   help=f"{ignore_when}with --dark-lesions: the VOXELS voxels around each dark lesion's mask, in its "
                        "box, are 'ignore' - a cleft's edges and its course through the cortex are neither dark "
                        "enough to keep nor sure to be bone (default 0: none), e.g. 2")


def label_options(args: argparse.Namespace, ignore_band: Optional[tuple[float, float]]) -> "LabelOptions":
    """The checked :class:`LabelOptions` of the arguments :func:`add_round_label_arguments` added, with the verb's
    own ``ignore_band``."""
    from nnunet_fracture.inference.label_options import LabelOptions

    return LabelOptions(ignore_band=ignore_band, ignore_ring=args.ignore_ring, ignore_unsure=args.ignore_unsure_boxes,
                        ignore_faint=args.ignore_faint_boxes, inside_vertebra=args.inside_vertebra,
                        dark_lesions=args.dark_lesions, ignore_dark_margin=args.ignore_dark_margin,
                        dark_grow=args.dark_grow)
