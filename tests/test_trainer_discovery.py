"""The stock nnU-Net trainer look-up finds the plugin's trainers through nnUNet_extTrainer, and only through it."""
from __future__ import annotations

import inspect
import sys

import pytest
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

import nnunet_fracture.trainers
from nnunet_fracture.environment import ext_trainer_problem
from nnunet_fracture.trainer_discovery import trainer_path

PLUGIN_TRAINERS = nnunet_fracture.trainers.__all__


def test_all_lists_the_package_trainers():
    assert "nnUNetTrainerFracture" in PLUGIN_TRAINERS
    for name in PLUGIN_TRAINERS:
        assert issubclass(getattr(nnunet_fracture.trainers, name), nnUNetTrainer), name


@pytest.mark.parametrize("name", PLUGIN_TRAINERS)
def test_stock_lookup_finds_the_same_class(nnunet_env, name):
    found = recursive_find_trainer_class_by_name(name)
    assert found is getattr(nnunet_fracture.trainers, name)  # re-exported, not a second copy
    assert "nnunet_fracture.trainers" in sys.modules  # nnU-Net's clean-up did not purge the package
    direct = recursive_find_python_class(str(trainer_path()), name, None, base_folder=str(trainer_path()))
    assert direct is found


@pytest.mark.parametrize("name", PLUGIN_TRAINERS)
def test_names_are_unique_and_signatures_exact(nnunet_env, monkeypatch, name):
    monkeypatch.delenv("nnUNet_extTrainer")
    with pytest.raises(RuntimeError, match="Could not find requested nnunet trainer"):
        recursive_find_trainer_class_by_name(name)  # no clash with a trainer shipped by nnU-Net
    cls = getattr(nnunet_fracture.trainers, name)
    # nnU-Net records its __init__ arguments by name to rebuild trainers: the signature must stay exactly this
    def parameters(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert parameters(cls.__init__) == parameters(nnUNetTrainer.__init__)


def test_problem_explained_without_the_variable(monkeypatch):
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    message = ext_trainer_problem()
    assert message is not None and "is not set" in message
    assert "export nnUNet_extTrainer=$(nnunet-fracture trainer-path)" in message
    assert str(trainer_path()) in message
    monkeypatch.setenv("nnUNet_extTrainer", "/somewhere/else")
    assert "/somewhere/else" in ext_trainer_problem()
    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_path()))
    assert ext_trainer_problem() is None
