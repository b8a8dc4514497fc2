"""``nnunet-fracture trainer-path``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trainer-path",
        help="print the folder to export as nnUNet_extTrainer",
        description="Print the folder that lets the stock nnUNetv2_train / nnUNetv2_predict find this "
        "plugin's trainers. Use: export nnUNet_extTrainer=$(nnunet-fracture trainer-path)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from nnunet_fracture.trainer_discovery import trainer_path

    print(trainer_path())
