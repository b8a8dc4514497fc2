"""``nnunet-fracture <verb>``: the plugin's single command-line entry point.

One module per verb (``cli/<verb>.py``) declares its arguments and help (``add``) and runs it (``run``); the
work is done by plain functions in the package, imported only when their verb runs so that ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import errno
import sys

from nnunet_fracture.cli import (attention_maps, convert, evaluate, fuse, phantom, postprocess, pseudo_masks,
                                 reorient, self_train, tiny_plans, trainer_path, vae_error, visualize)

VERBS = (phantom, convert, trainer_path, tiny_plans, postprocess, evaluate, pseudo_masks, self_train, visualize,
         reorient, fuse, vae_error, attention_maps)

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



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-fracture", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from nnunet_fracture import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.add(sub)
    return parser


# verbs after which the next step is usually nnUNetv2_train / nnUNetv2_predict with a plugin trainer
_BEFORE_TRAINING = ("convert", "tiny-plans", "reorient")


def os_error_message(error: OSError) -> str:
    """One line for an operating-system error: our own messages as they are, the system's with the file and a fix."""
    if error.errno is None:  # raised by the plugin with a full message
        return str(error)
    where = f" {error.filename}" if error.filename else ""
    fixes = {errno.EACCES: "check the folder's permissions or choose another --out",
             errno.EROFS: "the file system is read-only; choose another --out",
             errno.ENOSPC: "the disk is full; free space or choose another --out",
             errno.EFBIG: "a file-size limit (ulimit -f) was reached; raise it or choose another --out",
             errno.EISDIR: "a folder stands where a file is expected; check the path",
             errno.ENOTDIR: "a file stands where a folder is expected; check the path",
             errno.ENOENT: "check the path"}
    fix = fixes.get(error.errno, "check the path and the disk")
    return f"{error.strerror or error}:{where}. Fix: {fix}."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, RuntimeError) as e:
        print(f"nnunet-fracture {args.verb}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # missing or existing files (our messages), and the system's: permissions, full disk
        print(f"nnunet-fracture {args.verb}: error: {os_error_message(e)}", file=sys.stderr)
        return 1
    if args.verb in _BEFORE_TRAINING:
        from nnunet_fracture.environment import ext_trainer_problem

        problem = ext_trainer_problem()
        if problem:
            print(f"nnunet-fracture {args.verb}: note: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
