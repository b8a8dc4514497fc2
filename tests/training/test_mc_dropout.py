"""MC-Dropout machinery: dropout placement and mode, patches, variance statistics, difficulty, eps1 by rank."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from nnunet_fracture.training import difficulty, mc_assessment
from nnunet_fracture.training import mc_dropout as mcd
from nnunet_fracture.visualization.difficulty_figure import difficulty_figure


def test_epsilon_by_rank_both_directions():
    values = {"a": 0.1, "b": 0.3, "c": 0.2}
    assert difficulty.epsilon_by_rank(values, 0.0, 1.0) == pytest.approx({"a": 0.0, "c": 0.5, "b": 1.0})
    assert difficulty.epsilon_by_rank(values, -0.5, 0.5, "harder_smaller") == pytest.approx(
        {"a": 0.5, "c": 0.0, "b": -0.5})


def test_epsilon_by_rank_ties_single_and_nan():
    assert difficulty.epsilon_by_rank({"a": 1.0, "b": 1.0, "c": 3.0}, 0.0, 1.0) == pytest.approx(
        {"a": 0.25, "b": 0.25, "c": 1.0})
    assert difficulty.epsilon_by_rank({"a": 7.0}, 0.0, 2.0) == {"a": 1.0}
    assert difficulty.epsilon_by_rank({"a": float("nan"), "b": 1.0, "c": 2.0}, 0.0, 1.0) == {"b": 0.0, "c": 1.0}
    assert difficulty.neutral_epsilon(-1.0, 3.0) == 1.0
    with pytest.raises(ValueError, match="direction must be one of .* got 'up'"):
        difficulty.epsilon_by_rank({}, 0, 1, "up")
    with pytest.raises(ValueError, match="eps_min must be <= eps_max, got 2 > 1"):
        difficulty.epsilon_by_rank({}, 2, 1)


def test_aggregate_difficulty():
    variance = torch.tensor([0.0, 0.1, 0.2, 0.3])
    mean = torch.tensor([0.0, 0.6, 0.4, 0.9])
    assert mc_assessment.aggregate_difficulty(variance, mean, "mean") == pytest.approx(0.15)
    assert mc_assessment.aggregate_difficulty(variance, mean, "foreground") == pytest.approx(0.2)  # voxels 1 and 3
    assert mc_assessment.aggregate_difficulty(variance, mean, "top_percent", 50.0) == pytest.approx(0.25)
    assert mc_assessment.aggregate_difficulty(variance, mean, "top_percent", 1.0) == pytest.approx(0.3)
    assert mc_assessment.aggregate_difficulty(variance, torch.zeros(4), "foreground") == pytest.approx(0.15)  # fallback
    with pytest.raises(ValueError, match="aggregate must be one of"):
        mc_assessment.aggregate_difficulty(variance, mean, "median")


def test_auto_cases_per_round():
    # 0.1 * 2 forwards per sample * 10 epochs * 250 iterations * 2 samples / (10 passes * 1 patch) = 100
    assert mc_assessment.auto_cases_per_round(0.1, 10, 250, 2, 10, 1) == 100
    assert mc_assessment.auto_cases_per_round(0.1, 10, 250, 2, 10, 2) == 50
    assert mc_assessment.auto_cases_per_round(0.1, 1, 2, 2, 10, 1) == 1  # at least one


def test_cases_for_round_cycles_through_every_case():
    cases = [f"c{i}" for i in range(7)]
    assert mc_assessment.cases_for_round(cases, 3, 0, 0) == sorted(cases)
    seen = [c for r in range(3) for c in mc_assessment.cases_for_round(cases, r, 3, seed=5)]
    assert set(seen) == set(cases) and all(len(mc_assessment.cases_for_round(cases, r, 3, 5)) == 3 for r in range(5))
    assert mc_assessment.cases_for_round(cases, 1, 3, 5) == mc_assessment.cases_for_round(list(reversed(cases)), 1, 3, 5)


def test_patch_boxes_centred_on_foreground_and_inside():
    locations = np.array([[0, 10, 10, 10]])
    assert mc_assessment.draw_patch_boxes((20, 20, 20), (4, 4, 4), locations, 2, seed=1) == [(8, 8, 8), (8, 8, 8)]
    corner = np.array([[0, 1, 19, 10]])
    assert mc_assessment.draw_patch_boxes((20, 20, 20), (4, 6, 4), corner, 1, seed=1) == [(0, 14, 8)]  # clipped inside
    random_boxes = mc_assessment.draw_patch_boxes((20, 9, 5), (4, 4, 8), None, 5, seed=3)
    assert all(0 <= b[0] <= 16 and 0 <= b[1] <= 5 and b[2] == -2 for b in random_boxes)  # 5 < 8: centred
    assert random_boxes == mc_assessment.draw_patch_boxes((20, 9, 5), (4, 4, 8), None, 5, seed=3)
    assert mc_assessment.case_seed(0, "case1") != mc_assessment.case_seed(0, "case2")
    assert mc_assessment.case_seed(0, "case1") == mc_assessment.case_seed(0, "case1")


def test_foreground_locations_skip_the_annotated_key():
    assert mc_assessment.foreground_locations({1: [], (-1, 0, 1): [[0, 1, 1]]}) is None
    found = mc_assessment.foreground_locations({1: np.array([[0, 1, 2]]), 2: np.array([[0, 3, 4]])})
    assert found.tolist() == [[0, 1, 2], [0, 3, 4]]


def test_crop_patches_pads_with_zero():
    data = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    patches = mc_assessment.crop_patches(data, [(-1, 2)], (3, 3))
    assert patches.shape == (1, 1, 3, 3)
    assert patches[0, 0].tolist() == [[0, 0, 0], [2, 3, 0], [6, 7, 0]]


class Tiny(nn.Module):
    """logit = dropout(x) (one sigmoid channel), plus a head dropout and a batch norm that must stay in eval."""

    def __init__(self):
        super().__init__()
        self.mc = mcd.MCDropout(p=0.1)
        self.other = nn.Dropout(p=0.3)
        self.norm = nn.BatchNorm1d(1)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.mc(x) * self.scale


def test_mc_dropout_mode_switches_only_mc_dropout_and_restores():
    net = Tiny().train()
    with mcd.mc_dropout_mode(net, 0.5) as n:
        assert n == 1 and net.mc.training and net.mc.p == 0.5
        assert not net.other.training and not net.norm.training and net.other.p == 0.3
    assert net.training and net.mc.training and net.norm.training and net.mc.p == 0.1
    assert mcd.set_dropout_rate(net, 0.2) == 1 and net.mc.p == 0.2
    with pytest.raises(ValueError, match=r"p must be a dropout rate in \[0, 1\), got 1.0"):
        mcd.set_dropout_rate(net, 1.0)


def test_mc_statistics_without_dropout_has_zero_variance_and_the_sigmoid_mean():
    net = Tiny()
    patches = torch.tensor([[[0.0, 2.0]], [[-1.0, 1.0]]])  # (P=2, C=1, 2 voxels)
    variance, mean = mc_assessment.mc_statistics(net, patches, n_passes=4, p=0.0, activation="sigmoid")
    assert variance.shape == (2, 2) and torch.all(variance == 0)
    expected = [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-1))]
    assert mean.flatten().tolist() == pytest.approx(expected, rel=1e-6)


def test_mc_statistics_with_dropout_match_the_two_point_distribution():
    # a voxel with x = 3 is dropped (logit 0, P = 0.5) or kept (logit 6, P = sigmoid(6)) with probability 1/2 each:
    # over many passes the mean tends to (0.5 + sigmoid(6)) / 2 and the variance to ((sigmoid(6) - 0.5) / 2)^2
    torch.manual_seed(0)
    net = Tiny()
    variance, mean = mc_assessment.mc_statistics(net, torch.full((1, 1, 200), 3.0), n_passes=400, p=0.5,
                                       activation="sigmoid", batch_size=100)
    high = 1 / (1 + math.exp(-6))
    assert mean.mean().item() == pytest.approx((0.5 + high) / 2, abs=0.01)
    assert variance.mean().item() == pytest.approx(((high - 0.5) / 2) ** 2, rel=0.05)
    with pytest.raises(ValueError, match="n_passes must be >= 2"):
        mc_assessment.mc_statistics(net, torch.zeros(1, 1, 2), 1, 0.5, "sigmoid")


def test_softmax_statistics_use_the_foreground_channels():
    class TwoClass(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return [torch.cat([torch.zeros_like(x), x * self.w], dim=1), x[..., ::2]]  # deep supervision list

    variance, mean = mc_assessment.mc_statistics(TwoClass(), torch.tensor([[[math.log(3.0)]]]), 2, 0.0, "softmax")
    assert variance.item() == 0 and mean.item() == pytest.approx(0.75)


def test_difficulty_table_csv_state_and_plot(tmp_path):
    table = difficulty.DifficultyTable()
    table.record(9, {"b": 0.5, "a": 0.25})
    table.record(19, {"a": 0.125})
    assert table.latest() == {"a": 0.125, "b": 0.5}
    table.write_csv(tmp_path / "difficulty.csv")
    assert (tmp_path / "difficulty.csv").read_text(encoding="utf-8").splitlines() == ["epoch,a,b", "9,0.25,0.5", "19,0.125,"]
    restored = difficulty.DifficultyTable()
    restored.load_state_dict(table.state_dict())
    assert restored.rows == table.rows
    difficulty_figure(table.rows, table.cases, tmp_path / "difficulty.png")
    assert (tmp_path / "difficulty.png").read_bytes()[:4] == b"\x89PNG"
    difficulty.write_epsilon_csv(tmp_path / "epsilon.csv", {"b": 1.0, "a": 0.0})
    assert (tmp_path / "epsilon.csv").read_text(encoding="utf-8").splitlines() == ["case,epsilon", "a,0.0", "b,1.0"]


def _configuration(dropout_key: bool = True):
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    kwargs = {"n_stages": 2, "features_per_stage": [2, 4], "conv_op": "torch.nn.modules.conv.Conv3d",
              "kernel_sizes": [[3, 3, 3]] * 2, "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [1, 1],
              "n_conv_per_stage_decoder": [1], "conv_bias": True,
              "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
              "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
              "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    if not dropout_key:
        del kwargs["dropout_op"]
    return ConfigurationManager({"architecture": {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": kwargs, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}})


def test_with_dropout_copies_the_configuration_and_places_mc_dropout():
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    original = _configuration()
    changed = mcd.with_dropout(original, p=0.2)
    assert original.network_arch_init_kwargs["dropout_op"] is None  # the live plans are untouched
    kwargs = changed.network_arch_init_kwargs
    assert kwargs["dropout_op"] == mcd.MC_DROPOUT_OP and kwargs["dropout_op_kwargs"]["p"] == 0.2
    network = get_network_from_plans(changed.network_arch_class_name, kwargs,
                                     changed.network_arch_init_kwargs_req_import, 1, 2, deep_supervision=False)
    modules = mcd.dropout_modules(network)
    assert len(modules) == 3 and all(m.p == 0.2 for m in modules)  # two encoder convs, one decoder conv
    with pytest.raises(ValueError, match="has no 'dropout_op' argument"):
        mcd.with_dropout(_configuration(dropout_key=False))
