"""training_log: the logged pseudo Dice of a checkpoint and the collapse rule, by hand."""
import math

import pytest
import torch

from nnunet_fracture.training.training_log import (collapse_summary, learning_onset, logged_pseudo_dice,
                                                   pseudo_dice_in_log, pseudo_dice_summary)

NAN = float("nan")


def test_mean_of_the_scored_last_epochs():
    summary = pseudo_dice_summary([0.9, 0.9, 0.2, NAN, 0.4], last=3)  # the last 3: 0.2, NaN, 0.4
    assert summary == {"pseudo_dice_last_epochs": pytest.approx(0.3), "collapsed": False}


def test_collapsed_when_every_scored_last_epoch_is_zero():
    assert pseudo_dice_summary([0.6, 0.0, NAN, 0.0], last=3) == {"pseudo_dice_last_epochs": 0.0, "collapsed": True}
    # one epoch that marked something is enough not to be collapsed
    assert pseudo_dice_summary([0.0, 0.01, 0.0], last=3)["collapsed"] is False


def test_nothing_scored_is_unknown_not_collapsed():
    assert pseudo_dice_summary([0.5, NAN, NAN], last=2) == {"pseudo_dice_last_epochs": None, "collapsed": None}
    assert pseudo_dice_summary([], last=2) == {"pseudo_dice_last_epochs": None, "collapsed": None}
    with pytest.raises(ValueError, match="last must be >= 1, got 0"):
        pseudo_dice_summary([0.5], last=0)


def test_reads_nnunet_checkpoint_logging(tmp_path):
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {}, "logging": {"mean_fg_dice": [0.0, NAN, 0.25], "ema_fg_dice": [0.0] * 3}},
               path)
    values = logged_pseudo_dice(path)
    assert values[0] == 0.0 and math.isnan(values[1]) and values[2] == 0.25
    assert collapse_summary(path, last=2) == {"pseudo_dice_last_epochs": 0.25, "collapsed": False}


def test_a_file_that_is_not_a_checkpoint_names_itself(tmp_path):
    broken = tmp_path / "model.pth"
    torch.save({"network_weights": {}}, broken)
    with pytest.raises(ValueError, match=r"model.pth is not an nnU-Net checkpoint with a training log .*Fix: pass"):
        logged_pseudo_dice(broken)
    with pytest.raises(ValueError, match="missing.pth is not an nnU-Net checkpoint"):
        logged_pseudo_dice(tmp_path / "missing.pth")


class _Payload:
    """Anything beyond tensors, containers and numpy values: pickle would have to import and build it."""


def test_a_checkpoint_that_asks_pickle_for_more_is_refused_not_unpickled(tmp_path):
    from nnunet_fracture.io.checkpoints import UntrustedCheckpointError

    path = tmp_path / "checkpoint_final.pth"
    torch.save({"logging": {"mean_fg_dice": [0.5]}, "extra": _Payload()}, path)
    with pytest.raises(UntrustedCheckpointError,
                       match=r"checkpoint_final.pth: the checkpoint asks pickle for .*_Payload"):
        logged_pseudo_dice(path)


def test_pseudo_dice_lines_as_numpy_1_and_2_print_them():
    log = ("2026-12-07 12:40:44.195996: train_loss 0.01\n"
           "2026-12-07 12:40:44.195996: Pseudo dice [np.float32(0.0)] \n"
           "2026-12-07 12:41:44.195996: Pseudo dice [np.float32(0.25), np.float32(nan)] \n"
           "2026-12-07 12:42:44.195996: Pseudo dice [0.5, 0.1] \n"
           "2026-12-07 12:43:44.195996: Pseudo dice [nan] \n"
           "2026-12-07 12:44:44.195996: Pseudo dice [1e-04] \n")
    values = pseudo_dice_in_log(log)
    assert values[:3] == [0.0, 0.25, pytest.approx(0.3)]  # the mean over the scored classes
    assert math.isnan(values[3]) and values[4] == pytest.approx(1e-4)
    assert pseudo_dice_in_log("no validation yet\n") == []


def test_learning_onset_is_the_first_epoch_above_the_bar():
    assert learning_onset([0.001, 0.0, NAN, 0.0, 0.06, 0.0, 0.5]) == 4  # chance voxels at initialisation pass over
    assert learning_onset([0.001, 0.0, 0.5], above=0.0) == 0
    assert learning_onset([0.2]) == 0
    assert learning_onset([0.0, NAN, 0.05]) is None  # "above": 0.05 itself is not
    assert learning_onset([]) is None
    with pytest.raises(ValueError, match=r"above must be in \[0, 1\), got 1.0"):
        learning_onset([0.5], above=1.0)
