"""RegionAndPixelLoss reproduces nnU-Net's Dice + CE / Dice + BCE combination, ignore label included."""
import pytest
import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1

from nnunet_fracture.losses import FocalLoss, PolyDice1Loss, RegionAndPixelLoss


@pytest.mark.parametrize("ignore_label", [None, 3])
def test_labels_match_nnunet_dc_and_ce(ignore_label):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6)
    target = torch.randint(0, 3 if ignore_label is None else 4, (2, 1, 5, 6))
    dice_kwargs = {"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}
    reference = DC_and_CE_loss(dice_kwargs, {}, ignore_label=ignore_label, dice_class=MemoryEfficientSoftDiceLoss)
    ours = RegionAndPixelLoss(MemoryEfficientSoftDiceLoss(apply_nonlin=softmax_helper_dim1, **dice_kwargs),
                              ignore_label=ignore_label)
    assert ours(x, target).item() == pytest.approx(reference(x, target).item(), rel=1e-5)


@pytest.mark.parametrize("use_ignore", [False, True])
def test_regions_match_nnunet_dc_and_bce(use_ignore):
    torch.manual_seed(1)
    x = torch.randn(2, 2, 4, 4)
    target = (torch.rand(2, 3 if use_ignore else 2, 4, 4) > 0.6).float()
    dice_kwargs = {"batch_dice": False, "do_bg": True, "smooth": 1e-5, "ddp": False}
    reference = DC_and_BCE_loss({}, dice_kwargs, use_ignore_label=use_ignore, dice_class=MemoryEfficientSoftDiceLoss)
    ours = RegionAndPixelLoss(MemoryEfficientSoftDiceLoss(apply_nonlin=torch.sigmoid, **dice_kwargs), regions=True,
                              ignore_label=1 if use_ignore else None)
    assert ours(x, target).item() == pytest.approx(reference(x, target).item(), rel=1e-5)


def test_ignored_voxels_reach_neither_term_and_epsilon_reaches_the_region_term():
    x = torch.zeros(1, 2, 1, 4)
    x[0, 1, 0] = torch.tensor([2.0, -2.0, 0.0, 5.0])
    target = torch.tensor([1, 0, 1, 2]).reshape(1, 1, 1, 4)  # 2 = ignore label
    loss = RegionAndPixelLoss(PolyDice1Loss(), FocalLoss(gamma=0.0), ignore_label=2)
    kept = RegionAndPixelLoss(PolyDice1Loss(), FocalLoss(gamma=0.0))
    # the ignored voxel must not count: the same as leaving it out
    assert loss(x, target, epsilon=0.4).item() == pytest.approx(kept(x[..., :3], target[..., :3], epsilon=0.4).item(),
                                                                rel=1e-6)
    assert loss(x, target, epsilon=0.4).item() != pytest.approx(loss(x, target, epsilon=0.0).item())
    only_ignored = torch.full((1, 1, 1, 4), 2)
    assert RegionAndPixelLoss(PolyDice1Loss(), weight_region=0.0, ignore_label=2)(x, only_ignored).item() == 0.0


def test_errors():
    with pytest.raises(ValueError, match="weight_pixel must be a finite number >= 0, got -1"):
        RegionAndPixelLoss(PolyDice1Loss(), weight_pixel=-1)
    with pytest.raises(ValueError, match="both 0"):
        RegionAndPixelLoss(PolyDice1Loss(), weight_region=0, weight_pixel=0)
    with pytest.raises(ValueError, match=r"label map target .* got target shape \(1, 2, 4\) for net_output shape "
                                         r"\(1, 3, 4\)"):
        RegionAndPixelLoss(PolyDice1Loss())(torch.zeros(1, 3, 4), torch.zeros(1, 2, 4))
