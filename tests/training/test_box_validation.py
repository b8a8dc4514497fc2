import math

import numpy as np
import pytest
import torch

from nnunet_fracture.evaluation.box_metrics import BoxStats
from nnunet_fracture.training.box_validation import batch_counts, box_score, ensure_log_keys, stats_from_counts


def test_batch_counts_keep_samples_apart_and_pool():
    p = torch.tensor([[[0.9, 0.2, 0.0]], [[0.1, 0.3, 0.6]]]).reshape(2, 1, 3)
    ids = torch.tensor([[[1, 0, 0]], [[1, 1, 0]]], dtype=torch.int16).reshape(2, 1, 3)
    counts = batch_counts(p, ids, 0.5)
    stats = stats_from_counts(np.stack([counts, counts]))
    # per batch: box 1 of sample 0 hit (0.9), box 1 of sample 1 missed (max 0.3); outside 0.2, 0.0, 0.6
    assert stats.boxes_total == 4 and stats.boxes_hit == 2 and stats.outside_positive == 2
    assert stats.outside_total == 6 and stats.mass_inside == pytest.approx(2 * 1.3)
    assert stats.mass_total == pytest.approx(2 * 2.1)


def test_box_score_is_harmonic_mean_and_zero_when_undefined():
    assert box_score(BoxStats(mass_inside=1, mass_total=2, boxes_hit=1, boxes_total=4)) == pytest.approx(
        2 * 0.5 * 0.25 / 0.75)
    assert box_score(BoxStats(mass_inside=0, mass_total=0, boxes_hit=1, boxes_total=1)) == 0.0
    assert box_score(BoxStats(mass_inside=0, mass_total=1, boxes_hit=0, boxes_total=1)) == 0.0


def test_ensure_log_keys_pads_to_the_epoch():
    logging = {"mean_fg_dice": [0.1, 0.2], "box_hit_rate": [0.5]}
    ensure_log_keys(logging, 2)
    assert len(logging["box_mass_inside"]) == 2 and all(math.isnan(v) for v in logging["box_mass_inside"])
    assert logging["box_hit_rate"][0] == 0.5 and math.isnan(logging["box_hit_rate"][1])


def test_box_aware_validation_passes_the_trainers_extra_loss_inputs(monkeypatch):
    import nnunet_fracture.training.box_validation as module

    calls = []
    monkeypatch.setattr(module, "box_validation_step", lambda trainer, batch, extra: calls.append(extra) or "step")
    monkeypatch.setattr(module, "finish_validation_epoch", lambda trainer, outputs: calls.append(outputs))

    class Trainer(module.BoxAwareValidation):
        def extra_loss_inputs(self, batch):
            return {"hu": batch["data"] * 2}

    trainer = Trainer()
    assert trainer.validation_step({"data": 3}) == "step"
    trainer.on_validation_epoch_end(["a", "b"])
    assert calls == [{"hu": 6}, ["a", "b"]]
