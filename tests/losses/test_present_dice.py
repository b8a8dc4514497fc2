"""PresentDiceLoss: hand-computed values, empty targets left out, the ignore mask, batch pooling, errors."""
import pytest
import torch
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from nnunet_fracture.losses import PresentDiceLoss


def two_class(fg_probabilities):
    """(B, 2, N) probabilities from each image's foreground probabilities."""
    fg = torch.tensor(fg_probabilities, dtype=torch.float32)[:, None]
    return torch.cat([1 - fg, fg], dim=1)


P = two_class([[0.5, 0.25], [0.1, 0.0]])
T = torch.tensor([[[1, 0]], [[0, 0]]])  # image 0: the first voxel is foreground; image 1: empty


def test_empty_image_is_left_out_of_the_mean():
    # image 0: 2 * 0.5 / (1 + 0.75) = 4/7; image 1 (empty) does not count
    value = PresentDiceLoss(activation="none", smooth=0.0)(P, T)
    assert value.item() == pytest.approx(1 - 4 / 7, rel=1e-6)


def test_nnunet_dice_rewards_predicting_nothing_on_an_empty_image_and_this_loss_does_not():
    nothing = two_class([[0.5, 0.25], [0.0, 0.0]])
    nnunet = MemoryEfficientSoftDiceLoss(batch_dice=False, do_bg=False, smooth=1e-5)
    # nnU-Net: image 1 scores (0 + 1e-5) / (0 + 0 + 1e-5) = 1, so the mean Dice is (4/7 + 1) / 2
    assert -nnunet(nothing, T).item() == pytest.approx((4 / 7 + 1) / 2, rel=1e-4)
    ours = PresentDiceLoss(activation="none")
    assert ours(nothing, T).item() == pytest.approx(ours(P, T).item(), rel=1e-5) == pytest.approx(1 - 4 / 7, rel=1e-4)


def test_on_images_with_foreground_it_equals_nnunet_dice_shifted_by_one():
    logits = torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 3, (2, 1, 4, 4, 4), generator=torch.Generator().manual_seed(1))
    for batch in (False, True):
        nnunet = MemoryEfficientSoftDiceLoss(apply_nonlin=lambda x: torch.softmax(x, 1), batch_dice=batch,
                                             do_bg=False, smooth=1e-5, ddp=False)
        ours = PresentDiceLoss(batch=batch)(logits, target)
        assert ours.item() == pytest.approx(1 + nnunet(logits, target).item(), rel=1e-5)


def test_batch_pools_the_sums_before_the_dice():
    # pooled: 2 * (0.5 + 0) / (1 + 0.75 + 0.1) = 1 / 1.85
    value = PresentDiceLoss(activation="none", batch=True, smooth=0.0)(P, T)
    assert value.item() == pytest.approx(1 - 1 / 1.85, rel=1e-6)


def test_all_empty_gives_zero_with_a_graph():
    logits = torch.zeros(2, 2, 3, requires_grad=True)
    value = PresentDiceLoss()(logits, torch.zeros(2, 1, 3, dtype=torch.long))
    assert value.item() == 0.0
    value.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_loss_mask_removes_ignored_voxels():
    mask = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    # image 0 without its second voxel: 2 * 0.5 / (1 + 0.5) = 2/3
    value = PresentDiceLoss(activation="none", smooth=0.0)(P, T, loss_mask=mask)
    assert value.item() == pytest.approx(1 / 3, rel=1e-6)


def test_gradient_lowers_the_loss_towards_the_target():
    logits = torch.zeros(1, 2, 2, requires_grad=True)
    PresentDiceLoss()(logits, torch.tensor([[[1, 0]]])).backward()
    fg_grad = logits.grad[0, 1]
    assert fg_grad[0] < 0 < fg_grad[1]  # raise P on the foreground voxel, lower it on the background one


def test_shape_and_argument_errors():
    with pytest.raises(ValueError, match=r"target shape \(2, 2, 3\) fits neither .* net_output shape \(2, 2, 2\)"):
        PresentDiceLoss()(torch.zeros(2, 2, 2), torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match=r"loss_mask shape \(2, 1, 3\) does not fit net_output shape"):
        PresentDiceLoss()(torch.zeros(2, 2, 2), torch.zeros(2, 1, 2), loss_mask=torch.ones(2, 1, 3))
    with pytest.raises(ValueError, match="smooth must be a finite number >= 0, got -1"):
        PresentDiceLoss(smooth=-1)
    with pytest.raises(ValueError, match="activation must be one of"):
        PresentDiceLoss(activation="relu")
