"""training.loss_inputs: the batch's E channel and HU reach the loss as keyword arguments, only inside the block."""
from types import SimpleNamespace

import pytest
import torch

from nnunet_fracture.training.loss_inputs import loss_called_with, weak_loss_inputs


def test_error_map_is_the_clipped_channel_and_hu_undoes_ct_normalisation():
    data = torch.tensor([[[0.5, -1.0]], [[1.5, -0.25]]]).reshape(1, 2, 1, 2)  # channel 0 CT (normalised), 1 E
    extra = weak_loss_inputs(data, torch.device("cpu"), error_channel=1,
                             hu_normalisation=("CTNormalization", {"mean": 300.0, "std": 200.0}))
    assert extra["error_map"].tolist() == [[[[1.0, 0.0]]]]  # 1.5 and -0.25 clipped to [0, 1]
    assert extra["image_hu"].tolist() == [[[[400.0, 100.0]]]]  # 0.5 * 200 + 300, -1 * 200 + 300
    assert weak_loss_inputs(data, torch.device("cpu"), None, None) == {}
    with pytest.raises(ValueError, match="CTNormalization"):
        weak_loss_inputs(data, torch.device("cpu"), None, ("ZScoreNormalization", {"mean": 0.0, "std": 1.0}))


def test_the_loss_gets_the_inputs_only_inside_the_block():
    calls = []
    trainer = SimpleNamespace(loss=lambda output, target, **kw: calls.append(sorted(kw)) or 0.0)
    original = trainer.loss
    with loss_called_with(trainer, {"image_hu": 1}):
        trainer.loss("o", "t")
    trainer.loss("o", "t")
    with loss_called_with(trainer, {}):
        assert trainer.loss is original
    assert calls == [["image_hu"], []] and trainer.loss is original
    with pytest.raises(RuntimeError):
        with loss_called_with(trainer, {"error_map": 2}):
            raise RuntimeError("step failed")
    assert trainer.loss is original  # restored after an error too
