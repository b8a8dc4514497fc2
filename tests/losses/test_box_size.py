import math

import pytest
import torch

from nnunet_fracture.losses import BoxSizeLoss, extended_log_barrier


def test_extended_log_barrier_by_hand():
    t = 2.0  # the edge is z = -1/4
    z = torch.tensor([-1.0, -0.25, 0.0, 0.5])
    expected = [-math.log(1.0) / 2, -math.log(0.25) / 2, 2 * 0.0 - math.log(0.25) / 2 + 0.5,
                2 * 0.5 - math.log(0.25) / 2 + 0.5]
    assert extended_log_barrier(z, t).tolist() == pytest.approx(expected, rel=1e-6)


def test_barrier_is_continuous_with_slope_t_beyond_the_edge():
    t = 5.0
    edge = torch.tensor(-1 / t ** 2, dtype=torch.float64)
    below, above = extended_log_barrier(edge - 1e-9, t), extended_log_barrier(edge + 1e-9, t)
    assert below.item() == pytest.approx(above.item(), abs=1e-6)
    z = torch.tensor(0.3, requires_grad=True)
    extended_log_barrier(z, t).backward()
    assert z.grad.item() == pytest.approx(t)


def box(p_inside: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole 1 x 2 x 2 box in the middle of a 3 x 4 x 4 patch, P = 0.5 outside."""
    p = torch.full((1, 1, 3, 4, 4), 0.5)
    p[0, 0, 1, 1:3, 1:3] = torch.tensor(p_inside).reshape(2, 2)
    numbers = torch.zeros(p.shape, dtype=torch.long)
    numbers[0, 0, 1, 1:3, 1:3] = 1
    return torch.log(p / (1 - p)), numbers


def test_size_loss_by_hand():
    logits, numbers = box([0.1, 0.2, 0.3, 0.2])  # share 0.2
    loss = BoxSizeLoss(lower=0.1, upper=0.5, t=5.0)(logits, numbers)
    assert loss.item() == pytest.approx(-math.log(0.1) / 5 - math.log(0.3) / 5, rel=1e-5)


def test_a_box_filled_above_the_upper_bound_is_pushed_down():
    logits, numbers = box([0.9, 0.9, 0.9, 0.9])
    logits.requires_grad_(True)
    BoxSizeLoss(lower=0.05, upper=0.3, t=5.0)(logits, numbers).backward()
    assert bool((logits.grad[numbers > 0] > 0).all())
    assert bool((logits.grad[numbers == 0] == 0).all())


def test_a_cut_box_is_not_constrained():
    logits = torch.zeros(1, 1, 4, 4, 4, requires_grad=True)
    numbers = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    numbers[0, 0, 2:4, 1:3, 1:3] = 1  # touches the z border
    loss = BoxSizeLoss()(logits, numbers)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


@pytest.mark.parametrize("kwargs", [{"lower": 0.5, "upper": 0.2}, {"lower": -0.1}, {"upper": 1.5}, {"t": 0}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        BoxSizeLoss(**kwargs)
