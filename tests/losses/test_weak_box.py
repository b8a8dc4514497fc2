import math

import pytest
import torch

from nnunet_fracture.losses import WeakBoxLoss, deep_supervision_weights, find_bags


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def row(*values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype).reshape(1, 1, -1)


# outside P = 0.5, 0.2; box 1 P = 0.8, 0.5
LOGITS = row(0.0, logit(0.2), logit(0.8), 0.0)
NUMBERS = row(0, 0, 1, 1, dtype=torch.int16)
L1 = (-math.log(1 - 0.5) - math.log(1 - 0.2)) / 2
L2 = -math.log((0.8 + 0.5) / 2)
L3 = 0.5 - 0.8 + 0.5  # max outside - max box + margin 0.5


def test_total_is_the_lambda_weighted_sum_by_hand():
    loss = WeakBoxLoss(margin=0.5)
    total = loss(LOGITS, NUMBERS)
    assert total.dtype == torch.float32
    assert total.item() == pytest.approx(L1 + L2 + 0.1 * L3, rel=1e-5)
    assert loss.last_components == pytest.approx(
        {"outside": L1, "mil": L2, "contrast": L3, "consistency": 0.0, "tightness": 0.0, "size": 0.0,
         "affinity": 0.0, "smoothness": 0.0, "projection": 0.0, "total": L1 + L2 + 0.1 * L3}, rel=1e-5)
    weighted = WeakBoxLoss(lambda_outside=2.0, lambda_mil=0.5, lambda_contrast=1.0, margin=0.5)
    assert weighted(LOGITS, NUMBERS).item() == pytest.approx(2 * L1 + 0.5 * L2 + L3, rel=1e-5)


def test_other_pools_and_contrast_mode():
    smooth = (0.8 * math.exp(3.2) + 0.5 * math.exp(2.0)) / (math.exp(3.2) + math.exp(2.0))
    loss = WeakBoxLoss(lambda_contrast=1.0, aggregation="smooth_max", alpha=4.0, contrast_mode="mean", margin=0.5)
    # contrast "mean": mean outside 0.35 - mean box 0.65 + 0.5
    assert loss(LOGITS, NUMBERS).item() == pytest.approx(L1 - math.log(smooth) + 0.2, rel=1e-5)
    assert WeakBoxLoss(lambda_contrast=0.0, aggregation="max")(LOGITS, NUMBERS).item() == \
        pytest.approx(L1 - math.log(0.8), rel=1e-5)


def test_gradient_pushes_outside_down_and_inside_up():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 3, 4, 4, generator=generator).requires_grad_(True)
    numbers = torch.zeros(2, 1, 3, 4, 4, dtype=torch.int16)
    numbers[0, 0, 1:3, 1:3, 1:3] = 1
    numbers[1, 0, :, 2:, 2:] = 1
    WeakBoxLoss()(logits, numbers).backward()
    outside = numbers == 0
    assert (logits.grad[outside] > 0).all()
    assert (logits.grad[~outside] < 0).any()


def test_patch_without_a_box_gives_only_the_outside_term():
    logits = row(0.0, logit(0.8)).requires_grad_(True)
    loss = WeakBoxLoss()
    total = loss(logits, row(0, 0, dtype=torch.int16))
    expected = (math.log(2) - math.log(0.2)) / 2
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert loss.last_components["mil"] == 0.0 and loss.last_components["contrast"] == 0.0
    total.backward()
    assert (logits.grad > 0).all()


def test_sample_with_only_inside_voxels_skips_the_contrast():
    # sample 0 is all box 1 (P = 0.5, 0.5); sample 1 is all box 1 too: no outside voxel anywhere
    logits = torch.tensor([[0.0, 0.0], [logit(0.8), logit(0.8)]]).reshape(2, 1, 2).requires_grad_(True)
    loss = WeakBoxLoss(lambda_contrast=1.0)
    total = loss(logits, torch.ones(2, 1, 2, dtype=torch.int16))
    assert total.item() == pytest.approx((math.log(2) - math.log(0.8)) / 2, rel=1e-5)  # two bags
    assert loss.last_components["outside"] == 0.0 and loss.last_components["contrast"] == 0.0
    total.backward()
    assert (logits.grad < 0).all()


def test_deep_supervision_weights_follow_nnunet():
    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(2) == [1.0, 0.0]
    assert deep_supervision_weights(3) == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert deep_supervision_weights(4) == pytest.approx([4 / 7, 2 / 7, 1 / 7, 0.0])


def _two_scales():
    """A 4x4 box map and its nearest-exact 2x2 downsampling (rows/columns 1 and 3), with hand-set logits."""
    numbers = torch.tensor([[0, 0, 0, 0],
                            [0, 0, 2, 2],
                            [1, 1, 2, 2],
                            [1, 1, 0, 0]], dtype=torch.int16).reshape(1, 1, 4, 4)
    small = torch.nn.functional.interpolate(numbers.float(), size=(2, 2), mode="nearest-exact").to(torch.int16)
    assert small.flatten().tolist() == [0, 2, 1, 0]
    big_logits = torch.where(numbers == 2, logit(0.8), 0.0)  # box 2 at P = 0.8, everything else P = 0.5
    small_logits = torch.tensor([logit(0.2), logit(0.9), logit(0.6), logit(0.2)]).reshape(1, 1, 2, 2)
    # scale 0: L1 = -log 0.5 (8 outside voxels at 0.5); L2 = (-log 0.5 - log 0.8) / 2;
    #          L3 (margin 0.3) = (max(0, 0.5 - 0.5 + 0.3) + max(0, 0.5 - 0.8 + 0.3)) / 2 = 0.15
    big = math.log(2) + (math.log(2) - math.log(0.8)) / 2 + 0.1 * 0.15
    # scale 1: L1 = -log 0.8; L2 = (-log 0.6 - log 0.9) / 2; L3 = 0 (0.2 is far below both boxes)
    small_loss = -math.log(0.8) + (-math.log(0.6) - math.log(0.9)) / 2
    return [big_logits, small_logits], [numbers, small], big, small_loss


def test_nearest_downsampling_keeps_box_identities():
    _, (numbers, small), _, _ = _two_scales()
    assert find_bags(small).number.tolist() == find_bags(numbers).number.tolist() == [1, 2]


def test_two_scales_with_explicit_weights_by_hand():
    logits, numbers, big, small = _two_scales()
    loss = WeakBoxLoss(scale_weights=[1, 1])
    assert loss(logits, numbers).item() == pytest.approx(0.5 * big + 0.5 * small, rel=1e-5)
    assert loss.last_components["outside"] == pytest.approx(0.5 * math.log(2) - 0.5 * math.log(0.8), rel=1e-5)
    assert WeakBoxLoss(scale_weights=[3, 1])(logits, numbers).item() == pytest.approx(0.75 * big + 0.25 * small,
                                                                                      rel=1e-5)


def test_numpy_arguments_are_accepted():
    import numpy as np

    logits, numbers, big, small = _two_scales()
    loss = WeakBoxLoss(lambda_outside=np.float32(1.0), scale_weights=np.array([1.0, 1.0]))
    assert loss(logits, numbers).item() == pytest.approx(0.5 * big + 0.5 * small, rel=1e-5)


def test_default_two_scales_use_only_the_first():
    logits, numbers, big, _ = _two_scales()
    logits = [logits[0].requires_grad_(True), torch.full_like(logits[1], math.nan).requires_grad_(True)]
    total = WeakBoxLoss()(logits, numbers)  # the NaN scale is never computed
    assert total.item() == pytest.approx(big, rel=1e-5)
    total.backward()
    assert logits[0].grad is not None and logits[1].grad is None


def test_default_three_scales_ignore_the_lowest():
    logits, numbers, big, small = _two_scales()
    tiny_numbers = torch.nn.functional.interpolate(numbers[1].float(), size=(1, 1), mode="nearest-exact")
    tiny_logits = torch.full((1, 1, 1, 1), math.nan, requires_grad=True)
    logits[0].requires_grad_(True)
    total = WeakBoxLoss()(logits + [tiny_logits], numbers + [tiny_numbers])
    assert total.item() == pytest.approx(2 / 3 * big + 1 / 3 * small, rel=1e-5)
    total.backward()
    assert tiny_logits.grad is None


def test_error_map_is_area_resized_for_lower_scales():
    error_map = torch.full((1, 1, 4, 4), 0.5)
    error_map[..., :2, :2] = 1.0  # area-averaged to 2x2: [[1.0, 0.5], [0.5, 0.5]]
    logits = [torch.zeros(1, 1, 4, 4), torch.full((1, 1, 2, 2), logit(0.8))]
    numbers = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    loss = WeakBoxLoss(lambda_outside=0.0, lambda_mil=0.0, lambda_contrast=0.0, lambda_consistency=1.0,
                       scale_weights=[1, 1])
    # scale 0: |0.5 - E| is 0.5 on 4 of 16 voxels; scale 1: |0.8 - 1.0| + 3 |0.8 - 0.5| over 4 voxels
    expected = 0.5 * (4 * 0.5 / 16) + 0.5 * ((0.2 + 3 * 0.3) / 4)
    assert loss(logits, numbers, error_map).item() == pytest.approx(expected, rel=1e-5)
    assert loss.last_components["consistency"] == pytest.approx(expected, rel=1e-5)


def test_consistency_needs_both_an_error_map_and_a_positive_lambda():
    error_map = torch.ones(1, 1, 4)
    assert WeakBoxLoss(lambda_consistency=1.0)(LOGITS, NUMBERS).item() == \
        pytest.approx(WeakBoxLoss()(LOGITS, NUMBERS).item())
    with_map = WeakBoxLoss(lambda_consistency=0.5, margin=0.5)
    # mean |P - 1| = mean(0.5, 0.8, 0.2, 0.5) = 0.5
    assert with_map(LOGITS, NUMBERS, error_map).item() == pytest.approx(L1 + L2 + 0.1 * L3 + 0.5 * 0.5, rel=1e-5)
    without = WeakBoxLoss(lambda_consistency=0.0)
    without(LOGITS, NUMBERS, error_map)
    assert without.last_components["consistency"] == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits_give_a_finite_float32_loss(dtype):
    logits, numbers, _, _ = _two_scales()
    total = WeakBoxLoss(scale_weights=[1, 1], lambda_consistency=1.0)(
        [x.to(dtype) for x in logits], numbers, torch.rand(1, 1, 4, 4))
    assert total.dtype == torch.float32 and torch.isfinite(total)


def test_all_lambdas_zero_gives_a_graph_connected_zero():
    logits = LOGITS.clone().requires_grad_(True)
    total = WeakBoxLoss(0.0, 0.0, 0.0, 0.0)(logits, NUMBERS)
    assert total.item() == 0.0
    total.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lambda_outside": -1.0}, r"lambda_outside must be a finite number >= 0, got -1.0"),
        ({"lambda_mil": math.nan}, r"lambda_mil must be a finite number >= 0"),
        ({"lambda_contrast": -0.1}, r"lambda_contrast must be"),
        ({"lambda_consistency": "1"}, r"lambda_consistency must be"),
        ({"aggregation": "median"}, r"unknown aggregation 'median'; expected one of 'mean', 'max', 'smooth_max'"),
        ({"alpha": 0.0}, r"alpha must be a finite number > 0"),
        ({"margin": -0.3}, r"margin must be a finite number >= 0"),
        ({"contrast_mode": "sum"}, r"unknown contrast mode 'sum'; expected one of 'max', 'mean'"),
        ({"scale_weights": [1.0, -1.0]}, r"scale_weights\[1\] must be a finite number >= 0"),
        ({"scale_weights": [0, 0]}, r"scale_weights must not be all zero"),
        ({"scale_weights": []}, r"scale_weights must be a non-empty sequence"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WeakBoxLoss(**kwargs)


def test_input_errors():
    logits, numbers, _, _ = _two_scales()
    with pytest.raises(ValueError, match=r"scale_weights has 3 entries but logits has 2 deep-supervision scales"):
        WeakBoxLoss(scale_weights=[1, 1, 1])(logits, numbers)
    with pytest.raises(ValueError, match=r"logits has 2 deep-supervision scales but box_numbers has 1"):
        WeakBoxLoss()(logits, numbers[:1])
    with pytest.raises(ValueError, match=r"logits is a list of scales but box_numbers is a single tensor"):
        WeakBoxLoss()(logits, numbers[0])
    with pytest.raises(ValueError, match=r"box_numbers shape \(1, 1, 4, 4\) differs from logits shape \(1, 1, 2, 2\)"):
        WeakBoxLoss()(logits[::-1], numbers)
    with pytest.raises(ValueError, match=r"one sigmoid fracture channel.*\(1, 2, 4\).*"
                                         r"`nnunet-fracture convert --weak box\|slice`"):
        WeakBoxLoss()(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"error_map shape \(1, 1, 2, 2\) differs from the first .*\(1, 1, 4, 4\)"):
        WeakBoxLoss(lambda_consistency=1.0)(logits, numbers, torch.zeros(1, 1, 2, 2))
