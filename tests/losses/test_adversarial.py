"""The adversarial segmentation loss on tiny tensors with hand-computed values; D gets no gradient from G's step."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnunet_fracture.losses.adversarial import (AdversarialSegmentationLoss, GANLoss, delayed_weight,
                                                one_hot_with_ignore, segmentation_pair)


def test_gan_loss_by_hand():
    zero = torch.zeros(1, 1, 2, 2)
    assert GANLoss()(zero, real=True).item() == pytest.approx(math.log(2))
    assert GANLoss()(zero, real=False).item() == pytest.approx(math.log(2))
    assert GANLoss()(torch.full((1, 1, 1), 2.0), real=True).item() == pytest.approx(math.log(1 + math.exp(-2)))
    assert GANLoss("lsgan")(torch.tensor([[[1.0, 3.0]]]), real=False).item() == pytest.approx(5.0)  # (1 + 9) / 2
    assert GANLoss("lsgan")(torch.tensor([[[0.5]]]), real=True).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown GAN mode 'wgan'"):
        GANLoss("wgan")


def test_one_hot_with_ignore_zeroes_the_unknown_voxels():
    target = torch.tensor([[[0, 1, 2, 1]]])  # label 2 = ignore
    one_hot, known = one_hot_with_ignore(target, 2, ignore_label=2)
    assert one_hot.tolist() == [[[1, 0, 0, 0], [0, 1, 0, 1]]] and known.tolist() == [[[1, 1, 0, 1]]]
    with pytest.raises(ValueError, match=r"label map \(B, 1, \*spatial\), got \(1, 2, 4\)"):
        one_hot_with_ignore(torch.zeros(1, 2, 4), 2, None)
    with pytest.raises(ValueError, match="labels outside 0..1"):
        one_hot_with_ignore(target, 2, ignore_label=None)


def test_segmentation_pair_stacks_and_masks():
    pair = segmentation_pair(torch.full((1, 1, 3), 5.0), torch.ones(1, 2, 3), torch.tensor([[[1.0, 0.0, 1.0]]]))
    assert pair.tolist() == [[[5, 5, 5], [1, 0, 1], [1, 0, 1]]]
    with pytest.raises(ValueError, match=r"image \(1, 1, 3\) and segmentation \(1, 2, 4\)"):
        segmentation_pair(torch.zeros(1, 1, 3), torch.zeros(1, 2, 4))


class SumOfChannels(nn.Module):
    """A 'discriminator' whose logit per voxel is w . channels (w = (1, 0, 2): image, background, fracture)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[1.0], [0.0], [2.0]]]))

    def forward(self, x):
        return self.conv(x)


def constant_task(output, target):
    return output[0].sum() * 0 + 1.0  # 1, with a graph to the network output


def test_generator_term_by_hand_and_no_gradient_into_d():
    logits = torch.zeros(1, 2, 2, requires_grad=True)  # softmax 0.5 / 0.5 everywhere
    target, image = torch.tensor([[[1, 0]]]), torch.tensor([[[0.0, 1.0]]])
    loss = AdversarialSegmentationLoss(constant_task, SumOfChannels(), weight=0.5)
    value = loss([logits], [target], image=image)
    # D's logits: 0 + 2 * 0.5 = 1 and 1 + 2 * 0.5 = 2; G wants them real: mean(log(1 + e^-1), log(1 + e^-2))
    fooled = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    assert value.item() == pytest.approx(1 + 0.5 * fooled)
    value.backward()
    assert logits.grad is not None and loss.discriminator.conv.weight.grad is None
    assert loss.discriminator.conv.weight.requires_grad  # unfrozen again for D's own step
    # D's loss on the kept pair: real (one-hot) logits 2 and 1, fake (softmax) logits 1 and 2
    d_loss = loss.discriminator_loss()
    real = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    fake = (math.log(1 + math.exp(1)) + math.log(1 + math.exp(2))) / 2
    assert d_loss.item() == pytest.approx(0.5 * (real + fake))
    assert loss.discriminator_loss() is None  # the pair is used once


def test_ignored_voxels_look_the_same_in_both_pairs():
    loss = AdversarialSegmentationLoss(constant_task, SumOfChannels(), weight=1.0, ignore_label=2)
    loss(torch.zeros(1, 2, 2, requires_grad=True), torch.tensor([[[2, 1]]]), image=torch.zeros(1, 1, 2))
    image, real, fake = loss.pending
    assert real[..., 0].tolist() == fake[..., 0].tolist() == [[0.0, 0.0]]


def test_validation_and_weight_0_give_the_task_loss_alone():
    loss = AdversarialSegmentationLoss(constant_task, SumOfChannels(), weight=1.0)
    logits, target, image = torch.zeros(1, 2, 2), torch.tensor([[[1, 0]]]), torch.zeros(1, 1, 2)
    with torch.no_grad():
        assert loss(logits, target, image=image).item() == 1.0 and loss.pending is None
    assert loss(logits.requires_grad_(), target).item() == 1.0  # no image: nothing to judge
    off = AdversarialSegmentationLoss(constant_task, SumOfChannels(), weight=0)
    assert off(logits, target, image=image).item() == 1.0 and off.discriminator_loss() is None
    for bad in (-1.0, math.nan, True):
        with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
            AdversarialSegmentationLoss(constant_task, SumOfChannels(), weight=bad)


def test_the_delayed_weight_switches_on_at_the_start_share_of_the_epochs():
    assert [delayed_weight(0.01, e, 120, 0.5) for e in (0, 59, 60, 119)] == [0.0, 0.0, 0.01, 0.01]
    assert [delayed_weight(0.2, e, 5, 0.5) for e in (2, 3)] == [0.0, 0.2]  # epoch ceil(2.5) = 3
    assert delayed_weight(0.2, 0, 5, 0.0) == 0.2  # no delay
    assert max(delayed_weight(0.2, e, 5, 1.0) for e in range(5)) == 0.0  # never on
    for bad in ((-0.1, 0, 5, 0.5), (0.1, -1, 5, 0.5), (0.1, 0, 0, 0.5), (0.1, 0, 5, 1.5)):
        with pytest.raises(ValueError, match="need weight >= 0"):
            delayed_weight(*bad)
