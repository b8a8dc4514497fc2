import pytest
import torch

from nnunet_fracture.losses import BoxSmoothnessLoss, WeakBoxLoss


def logits_of(p):
    p = torch.as_tensor(p, dtype=torch.float32)
    return torch.log(p / (1 - p))


def test_mean_squared_difference_of_pairs_in_one_box_by_hand():
    # a 1 x 1 x 4 line: pairs (0.8, 0.6) and (0.6, 0.2) in box 1; (0.2, 0.9) spans box 1 / box 2
    p = logits_of([0.8, 0.6, 0.2, 0.9]).reshape(1, 1, 1, 1, 4)
    numbers = torch.tensor([1, 1, 1, 2]).reshape(1, 1, 1, 1, 4)
    loss = BoxSmoothnessLoss()(p, numbers)
    assert loss.item() == pytest.approx((0.2 ** 2 + 0.4 ** 2) / 2, rel=1e-5)


def test_diagonal_pairs_count_and_outside_voxels_do_not_by_hand():
    # a 2 x 2 slice, box 1 on three voxels, one voxel outside: pairs (0,0)-(0,1), (0,0)-(1,0), (0,1)-(1,0)
    p = logits_of([[0.9, 0.5], [0.3, 0.1]]).reshape(1, 1, 1, 2, 2)
    numbers = torch.tensor([[1, 1], [1, 0]]).reshape(1, 1, 1, 2, 2)
    loss = BoxSmoothnessLoss()(p, numbers)
    assert loss.item() == pytest.approx((0.4 ** 2 + 0.6 ** 2 + 0.2 ** 2) / 3, rel=1e-5)


def test_stripes_cost_more_than_a_solid_block_with_the_same_mass():
    numbers = torch.ones(1, 1, 4, 4, 4)
    stripes = torch.tensor([0.9, 0.1, 0.9, 0.1]).reshape(1, 1, 1, 1, 4).expand(1, 1, 4, 4, 4)
    block = torch.tensor([0.9, 0.9, 0.1, 0.1]).reshape(1, 1, 1, 1, 4).expand(1, 1, 4, 4, 4)
    loss = BoxSmoothnessLoss()
    assert loss(logits_of(stripes), numbers) > 2 * loss(logits_of(block), numbers)


def test_gradient_pulls_a_pair_together():
    x = logits_of([0.8, 0.3]).reshape(1, 1, 1, 1, 2).requires_grad_(True)
    BoxSmoothnessLoss()(x, torch.ones(1, 1, 1, 1, 2)).backward()
    g = x.grad.flatten()
    assert g[0] > 0 and g[1] < 0  # gradient descent lowers the higher P and raises the lower one


def test_no_box_gives_a_connected_zero():
    x = torch.randn(1, 1, 2, 2, 2, requires_grad=True)
    loss = BoxSmoothnessLoss()(x, torch.zeros(1, 1, 2, 2, 2))
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None


def test_argument_and_shape_errors_quote_the_problem():
    with pytest.raises(ValueError, match="dilation must be one integer >= 1"):
        BoxSmoothnessLoss(dilation=(1, 0, 1))
    with pytest.raises(ValueError, match=r"box_numbers shape \(1, 1, 2, 2, 3\) differs from logits shape "
                                         r"\(1, 1, 2, 2, 2\)"):
        BoxSmoothnessLoss()(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 3))
    with pytest.raises(ValueError, match="dilation has 3 entries"):
        BoxSmoothnessLoss()(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))


def test_weak_box_loss_adds_it_at_the_highest_resolution_only():
    p = logits_of([0.8, 0.6, 0.2, 0.9]).reshape(1, 1, 1, 1, 4)
    numbers = torch.tensor([1, 1, 1, 2]).reshape(1, 1, 1, 1, 4)
    low = torch.zeros(1, 1, 1, 1, 2)  # a second scale with weight 0 (nnU-Net's lowest) is never read
    loss = WeakBoxLoss(lambda_outside=0, lambda_mil=0, lambda_contrast=0, lambda_smoothness=2.0)
    total = loss([p, low], [numbers, torch.ones(1, 1, 1, 1, 2)])
    assert total.item() == pytest.approx(2.0 * (0.2 ** 2 + 0.4 ** 2) / 2, rel=1e-5)
    assert loss.last_components["smoothness"] == pytest.approx((0.2 ** 2 + 0.4 ** 2) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="lambda_smoothness must be a finite number >= 0"):
        WeakBoxLoss(lambda_smoothness=-1)
