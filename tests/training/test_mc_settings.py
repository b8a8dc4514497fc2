"""The PolyDice-MCD settings mixin: checks and each image's eps1."""
from __future__ import annotations

import pytest
import torch

from nnunet_fracture.training.mc_settings import MCDropoutSettings


class Holder(MCDropoutSettings):
    device = torch.device("cpu")

    def __init__(self, **settings):
        self.epsilon = {}
        for name, value in settings.items():
            setattr(self, name, value)


def test_unassessed_cases_get_the_middle_of_the_range():
    holder = Holder(epsilon_min=-1.0, epsilon_max=3.0)
    holder.epsilon = {"a": 2.5}
    assert holder.neutral_epsilon == 1.0
    assert holder.epsilon_for(["a", "b", "a"]).tolist() == [2.5, 1.0, 2.5]


@pytest.mark.parametrize("settings, error, message", [
    ({"dropout_p_train": 1.0}, ValueError, "dropout_p_train must be a dropout rate in"),
    ({"mc_dropout_p": -0.1}, ValueError, "mc_dropout_p must be a dropout rate in"),
    ({"epsilon_direction": "sideways"}, ValueError, "direction must be one of"),
])
def test_bad_settings_are_refused(settings, error, message):
    with pytest.raises(error, match=message):
        Holder(**settings).check_mc_settings(cascaded=False)


def test_mc_rounds_refuse_a_cascade_unless_switched_off():
    with pytest.raises(RuntimeError, match="set mc_every=0"):
        Holder().check_mc_settings(cascaded=True)
    Holder(mc_every=0).check_mc_settings(cascaded=True)
