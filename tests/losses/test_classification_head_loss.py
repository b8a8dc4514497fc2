"""classification_target and ClassificationHeadLoss on hand-made tensors with hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnunet_fracture.losses.classification_head import ClassificationHeadLoss, classification_target


class ConstantLoss(nn.Module):
    """A stand-in segmentation loss: returns ``value`` and records what it was called with."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.calls = []

    def forward(self, output, target, **kwargs):
        self.calls.append((output, target, kwargs))
        return torch.tensor(self.value)


# --- classification targets --------------------------------------------------------------------------------------
def test_target_from_mask_any_foreground_voxel():
    target = torch.zeros(3, 1, 4, 4, dtype=torch.int16)
    target[0, 0, 3, 2] = 1  # one voxel
    target[2, 0, :2, :2] = 1
    assert classification_target(target, (1, 1)).flatten().tolist() == [1.0, 0.0, 1.0]


def test_target_excludes_the_ignore_label():
    target = torch.zeros(3, 1, 2, 2, 2, dtype=torch.int16)
    target[0, 0, 0, 0, 0] = 2  # only ignore: no fracture
    target[1, 0, 0, 0, 0] = 2
    target[1, 0, 1, 1, 1] = 1  # ignore and fracture
    assert classification_target(target, (1, 1, 1), ignore_label=2).flatten().tolist() == [0.0, 1.0, 0.0]
    assert classification_target(target, (1, 1, 1)).flatten().tolist() == [1.0, 1.0, 0.0]  # no ignore label


def test_target_from_box_numbers():
    target = torch.zeros(2, 1, 3, 3, 3, dtype=torch.int16)
    target[1, 0, 0, :2, :2] = 3  # box number 3
    assert classification_target(target, (1, 1, 1)).flatten().tolist() == [0.0, 1.0]


def test_target_per_slice():
    target = torch.zeros(1, 1, 3, 2, 2, dtype=torch.int16)
    target[0, 0, 0, 1, 1] = 1
    target[0, 0, 2, 0, 0] = 4
    y = classification_target(target, (3, 1, 1))
    assert y.shape == (1, 1, 3, 1, 1) and y.flatten().tolist() == [1.0, 0.0, 1.0]
    assert classification_target(target, (1, 1, 1)).flatten().tolist() == [1.0]


def test_target_from_one_hot_regions_with_ignore_channel():
    target = torch.zeros(3, 3, 2, 2, dtype=torch.bool)  # two regions + nnU-Net's ignore channel last
    target[0, 1, 0, 0] = True  # second region
    target[1, 0, 1, 1] = True  # first region, but ignored there
    target[1, 2, 1, 1] = True
    target[2, 2, 0, 0] = True  # ignore only
    assert classification_target(target, (1, 1), ignore_label=3).flatten().tolist() == [1.0, 0.0, 0.0]


def test_target_rejects_mismatched_axes():
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 4\).*\(1, 1, 1\)"):
        classification_target(torch.zeros(1, 1, 4, 4), (1, 1, 1))


# --- the loss ----------------------------------------------------------------------------------------------------
def test_loss_value_by_hand():
    seg = ConstantLoss(2.0)
    loss = ClassificationHeadLoss(seg)  # w_cls 1.0, w_seg 0.1
    target = torch.zeros(2, 1, 4, 4, dtype=torch.int16)
    target[0, 0, 1, 1] = 1
    logits = torch.tensor([2.0, -1.0]).reshape(2, 1, 1, 1)  # y = (1, 0)
    output = torch.zeros(2, 2, 4, 4)
    value = loss(output, target, class_logits=logits)
    bce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2  # 0.220095
    assert value.item() == pytest.approx(bce + 0.1 * 2.0)
    assert loss.last_components == pytest.approx({"classification": bce, "segmentation": 2.0,
                                                  "total": bce + 0.2})
    assert seg.calls[0][0] is output and seg.calls[0][1] is target


def test_loss_weights_and_sum_reduction():
    target = torch.zeros(2, 1, 2, 2, dtype=torch.int16)
    logits = torch.zeros(2, 1, 1, 1)  # BCE log 2 per sample
    loss = ClassificationHeadLoss(ConstantLoss(3.0), weight_cls=0.5, weight_seg=2.0, reduction="sum")
    assert loss(torch.zeros(2, 2, 2, 2), target, logits).item() == pytest.approx(0.5 * 2 * math.log(2) + 6.0)


def test_loss_skips_segmentation_when_its_weight_is_zero():
    seg = ConstantLoss(5.0)
    loss = ClassificationHeadLoss(seg, weight_seg=0.0)
    value = loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.int16), torch.zeros(1, 1, 1, 1))
    assert value.item() == pytest.approx(math.log(2)) and not seg.calls


def test_loss_reads_deep_supervision_lists_and_the_logits_source():
    target = [torch.ones(1, 1, 4, 4, dtype=torch.int16), torch.zeros(1, 1, 2, 2, dtype=torch.int16)]
    logits = torch.zeros(1, 1, 1, 1, requires_grad=True)
    seg = ConstantLoss(0.0)
    loss = ClassificationHeadLoss(seg, class_logits_source=lambda: logits)
    output = [torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)]
    value = loss(output, target)  # y from the full-resolution target: 1
    assert value.item() == pytest.approx(math.log(2))
    value.backward()
    assert logits.grad.item() == pytest.approx(-0.5)  # d BCE / d logit = sigmoid(0) - 1
    assert seg.calls[0][0] is output and seg.calls[0][1] is target


def test_loss_per_slice_logits():
    target = torch.zeros(1, 1, 2, 2, 2, dtype=torch.int16)
    target[0, 0, 1] = 1  # slice 1 holds fracture
    logits = torch.zeros(1, 1, 2, 1, 1)
    loss = ClassificationHeadLoss(ConstantLoss(0.0))
    assert loss(torch.zeros(1, 2, 2, 2, 2), target, logits).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight_cls=-1.0), "weight_cls"), (dict(weight_seg=math.inf), "weight_seg"),
    (dict(weight_seg=True), "weight_seg"), (dict(reduction="none"), "reduction"),
])
def test_loss_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassificationHeadLoss(ConstantLoss(0.0), **kwargs)


def test_loss_shape_errors_quote_both_shapes():
    loss = ClassificationHeadLoss(ConstantLoss(0.0))
    target = torch.zeros(2, 1, 4, 4, dtype=torch.int16)
    with pytest.raises(ValueError, match=r"\(3, 1, 1, 1\).*\(2, 1, 4, 4\)"):
        loss(torch.zeros(2, 2, 4, 4), target, torch.zeros(3, 1, 1, 1))
    with pytest.raises(ValueError, match=r"\(2, 1, 1\).*\(2, 1, 4, 4\)"):
        loss(torch.zeros(2, 2, 4, 4), target, torch.zeros(2, 1, 1))
    with pytest.raises(ValueError, match="class_logits_source"):
        loss(torch.zeros(2, 2, 4, 4), target)


def test_loss_passes_extra_arguments_to_the_segmentation_loss():
    seg = ConstantLoss(1.0)
    error_map = torch.zeros(1, 1, 2, 2)
    ClassificationHeadLoss(seg)(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.int16),
                                torch.zeros(1, 1, 1, 1), error_map=error_map)
    assert seg.calls[0][2] == {"error_map": error_map}
