"""The classification head's online validation numbers, on hand-made patches."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nnunetv2.training.logging.nnunet_logger import MetaLogger

from nnunet_fracture.training.class_head_validation import (CLS_LOG_KEYS, class_scores, log_class_numbers,
                                                             pop_class_scores)


def test_scores_and_labels_of_a_batch():
    target = torch.zeros(3, 1, 2, 2, 2)
    target[0, 0, 1, 1, 1] = 1  # fracture
    target[2, 0, 0, 0, 0] = 2  # only the ignore label: no fracture
    out = class_scores(torch.tensor([0.0, math.log(3.0), -math.log(3.0)]).view(3, 1, 1, 1, 1), target, ignore_label=2)
    assert out["cls_scores"] == pytest.approx([0.5, 0.75, 0.25])
    assert out["cls_labels"].tolist() == [1.0, 0.0, 0.0]


class FakeTrainer:
    def __init__(self, epoch, folder):
        self.current_epoch, self.logger, self.lines = epoch, MetaLogger(folder, resume=False), []

    def print_to_log_file(self, *args):
        self.lines.append(" ".join(map(str, args)))


def test_pooled_accuracy_and_auc_after_a_resume(tmp_path):
    outputs = [{"loss": 1.0, "cls_scores": np.array([0.9, 0.2]), "cls_labels": np.array([1.0, 0.0])},
               {"loss": 2.0, "cls_scores": np.array([0.6, 0.7]), "cls_labels": np.array([0.0, 1.0])}]
    scores, labels = pop_class_scores(outputs, is_ddp=False)
    assert outputs == [{"loss": 1.0}, {"loss": 2.0}]  # nnU-Net's own pooling sees no extra keys
    trainer = FakeTrainer(epoch=2, folder=tmp_path)  # resumed from a checkpoint logged without the head's keys
    accuracy, auc = log_class_numbers(trainer, scores, labels)
    # at 0.5: 0.9 (1) right, 0.2 (0) right, 0.6 (0) wrong, 0.7 (1) right; positives 0.9, 0.7 beat negatives 0.2 and
    # 0.6 in all 4 pairs
    assert (accuracy, auc) == (0.75, 1.0)
    logged = trainer.logger.local_logger.my_fantastic_logging
    for key, value in zip(CLS_LOG_KEYS, (0.75, 1.0)):
        assert math.isnan(logged[key][0]) and math.isnan(logged[key][1]) and logged[key][2] == value
    assert trainer.lines == ["classification head: accuracy 0.7500, AUC 1.0000 over 4 validation patches (2 with "
                             "fracture)"]
