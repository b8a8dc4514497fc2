"""``nnunet-fracture self-train``: its arguments and help (``add``) and the call into the package (``run``),
imported only when the verb runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_fracture.cli.round_label_arguments import add_round_label_arguments, label_options

SELF_TRAIN_DESCRIPTION = """\
Self-training rounds, the flywheel from boxes to a fully supervised model, all through the stock nnU-Net commands.

Each round turns probabilities predicted on the box dataset's own images into pseudo-masks inside the boxes
(rule + refinement, as `nnunet-fracture pseudo-masks`), exports them as a new dataset whose uncertain box voxels
carry nnU-Net's 'ignore' label, gives it the box dataset's plans, trains --trainer on it and, when another round
follows, predicts the box dataset's images again as that round's input. The last round's model is the strong
model; it does not predict the training images (a later --resume with more rounds has it do so first).

How many rounds: on the quality bench (phantom, 3 seeds, README) one round took the weak model's pseudo-masks from
in-box Dice 0.44 to a strong model at 0.56 (whole volume 0.11 -> 0.29); a second round raised the whole-volume
Dice on every seed (0.29 -> 0.35) and cut false positives on fracture-free cases, without changing the in-box Dice.

In:
  PRED       nnUNetv2_predict --save_probabilities folder(s) of the weak model on the box dataset's imagesTr
             (several = one per fold)
  --dataset  the box dataset (ID), planned and preprocessed with --plans

Out (--out DIR): round<r>/pseudo_masks, round<r>/predictions (not the last round), commands.log, and
self_training.json with each round's numbers (boxes kept, refined, reset, empty, ignored as unsure; Dice of the
pseudo-masks inside the boxes when the dataset has groundTruthTr, e.g. the phantom; the model's online pseudo Dice
over its last 10 epochs and whether it collapsed - 0 on every validation patch, so it marks nothing: a collapsed
round stops the run before the next round learns from it). Round r's dataset is Dataset<first-id + r - 1>_<name>R<r>.
"""

SELF_TRAIN_EPILOG = """\
Example (after training nnUNetTrainerWeakBBox on Dataset501, fold all):
  nnUNetv2_predict -i $nnUNet_raw/Dataset501_Phantom/imagesTr -o weak_pred -d 501 -c 3d_fullres -f all \\
      -tr nnUNetTrainerWeakBBox --save_probabilities
  nnunet-fracture self-train weak_pred --dataset 501 --first-id 510 --name PhantomSelf --rounds 2 --out selftrain/
  # strong model: nnUNetTrainerPresentDice__nnUNetPlans__3d_fullres of Dataset511_PhantomSelfR2
"""


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("self-train", help="self-training rounds: pseudo-masks -> stock training -> predict, N times",
                       description=SELF_TRAIN_DESCRIPTION, epilog=SELF_TRAIN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pred", type=Path, nargs="+", metavar="PRED", help="the weak model's prediction folder(s)")
    p.add_argument("--dataset", required=True, help="the box dataset's ID (planned and preprocessed)")
    p.add_argument("--out", type=Path, required=True, help="working folder (see Out above)")
    p.add_argument("--first-id", type=int, required=True, help="dataset ID of round 1 (round r: first-id + r - 1)")
    p.add_argument("--name", required=True, help="dataset name stem (round r: <name>R<r>)")
    p.add_argument("--rounds", type=int, default=2, help="number of rounds (default 2)")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("-c", "--configuration", default="3d_fullres", help="configuration (default 3d_fullres)")
    p.add_argument("-f", "--fold", default="all", help="fold to train each round (default all)")
    p.add_argument("-tr", "--trainer", default="nnUNetTrainerPresentDice",
                   help="trainer of each round (default nnUNetTrainerPresentDice: nnU-Net's Dice + CE, the Dice only "
                        "over patches that hold foreground; rounds of the stock nnUNetTrainer on sparse pseudo-masks "
                        "collapsed to predicting nothing)")
    p.add_argument("-device", "--device", default="cuda", help="cuda, cpu or mps (default cuda)")
    p.add_argument("--rule", choices=("fixed", "otsu", "fraction"), default="fixed",
                   help="pseudo-mask rule (default fixed)")
    p.add_argument("--threshold", type=float, default=0.5, help="fixed rule: keep P >= this (default 0.5)")
    p.add_argument("--refine", choices=("none", "random_walker"), default="random_walker",
                   help="pseudo-mask refinement (default random_walker)")
    p.add_argument("--ignore-band", type=float, nargs=2, default=(0.2, 0.5), metavar=("LOW", "HIGH"),
                   help="box voxels outside the mask with LOW <= P < HIGH are 'ignore' (default 0.2 0.5)")
    p.add_argument("--no-ignore", action="store_true", help="label every voxel (no ignore band)")
    add_round_label_arguments(p)
    p.add_argument("--disable-tta", action="store_true", help="predict without test-time mirroring (faster)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out and the rounds' datasets (with their preprocessed data and models); with "
                        "--resume, keep the finished rounds and replace only what stands at the IDs of the rounds "
                        "still to run")
    p.add_argument("--resume", action="store_true",
                   help="keep the rounds finished in --out (same inputs and settings), redo an unfinished one and run "
                        "the rest; with a larger --rounds, add rounds to a finished run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from nnunet_fracture.self_training import self_train

    record = self_train(args.pred, args.dataset, args.out, first_id=args.first_id, name=args.name,
                        rounds=args.rounds, plans=args.plans, configuration=args.configuration, fold=args.fold,
                        trainer=args.trainer, device=args.device, rule=args.rule, threshold=args.threshold,
                        refine=args.refine,
                        options=label_options(args, None if args.no_ignore else tuple(args.ignore_band)),
                        overwrite=args.overwrite,
                        disable_tta=args.disable_tta, resume=args.resume)
    for entry in record["rounds"]:
        dice = entry["in_box_dice_vs_ground_truth"]
        unsure = f", {entry['unsure_boxes']} ignored as unsure" if entry.get("unsure_boxes") else ""
        print(f"round {entry['round']}: {entry['dataset']}, {entry['boxes']} boxes "
              f"({entry['empty_boxes']} empty{unsure})"
              + (f", pseudo-mask Dice in boxes {dice:.3f}" if dice is not None else "")
              + (", MODEL COLLAPSED (marks nothing)" if entry.get("collapsed") else ""))
    print(f"strong model: {record['rounds'][-1]['model']}; record in {args.out / 'self_training.json'}")
