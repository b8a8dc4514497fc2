"""The first weak-box recipe's settings mixin: loss arguments and the L4 log line."""
from __future__ import annotations

from nnunet_fracture.training.box_mil_settings import BoxMILSettings
from nnunet_fracture.training.settings import declared_settings


class Recipe(BoxMILSettings):
    lambda_outside = 1.0
    lambda_mil = 0.5
    lambda_contrast = 0.1
    bag_aggregation = "smooth_max"
    smooth_max_alpha = 6.0


def test_loss_arguments_name_the_weak_box_loss_parameters():
    assert Recipe().box_mil_loss_arguments() == {
        "lambda_outside": 1.0, "lambda_mil": 0.5, "lambda_contrast": 0.1, "lambda_consistency": 0.0,
        "aggregation": "smooth_max", "alpha": 6.0, "margin": 0.3, "contrast_mode": "max"}


def test_every_term_is_off_unless_a_trainer_switches_it_on():
    arguments = BoxMILSettings().box_mil_loss_arguments()
    assert [arguments[k] for k in ("lambda_outside", "lambda_mil", "lambda_contrast", "lambda_consistency")] == [0] * 4


def test_settings_are_declared_for_the_environment():
    assert {"lambda_outside", "lambda_mil", "bag_aggregation", "contrast_mode"} <= set(declared_settings(Recipe))


def test_consistency_note_for_each_case():
    recipe = Recipe()
    assert recipe.consistency_note(1) is None  # L4 off: nothing to say
    recipe.lambda_consistency = 0.2
    assert recipe.consistency_note(1) == "L4 (lambda_consistency=0.2) reads the VAE error map E from input channel 1"
    assert recipe.consistency_note(None).startswith("L4 skipped: lambda_consistency=0.2 but the dataset has no VAE")
    assert recipe.consistency_note(1, "DiceCELoss") == ("L4 skipped: lambda_consistency=0.2 but the loss DiceCELoss "
                                                         "takes no error map")
