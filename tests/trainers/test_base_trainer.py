"""nnUNetTrainerFracture: declared settings, the environment override, the log line and checkpointed state."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

import nnunet_fracture
from nnunet_fracture.trainers import nnUNetTrainerFracture
from nnunet_fracture.training.checkpoint import CHECKPOINT_KEY
from nnunet_fracture.training.settings import (ENV_VAR, SettingsError, declared_settings, parse_pairs, parse_value,
                                               resolve_settings)
from nnunet_fracture.stock_commands import run_stock
from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, quiet_env
from trainer_helpers import make_trainer


class nnUNetTrainerFractureProbe(nnUNetTrainerFracture):
    """A plugin-style subclass: own settings, a changed base default and extra checkpointed state."""
    settings = ("tag", "lambda_outside", "mirror_axes")
    tag = "probe"
    lambda_outside = 1.0
    mirror_axes = (0, 1, 2)
    num_epochs = 7  # changes a base default without re-declaring it

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.steps_seen = 0

    def train_step(self, batch: dict) -> dict:
        self.steps_seen += 1
        return super().train_step(batch)

    def get_extra_state(self) -> dict:
        return {**super().get_extra_state(), "steps_seen": self.steps_seen}

    def set_extra_state(self, state: dict) -> None:
        super().set_extra_state(state)
        self.steps_seen = state["steps_seen"]


class nnUNetTrainerFractureOther(nnUNetTrainerFracture):
    settings = ("margin",)
    margin = 0.1


class nnUNetTrainerFractureBoth(nnUNetTrainerFractureProbe, nnUNetTrainerFractureOther):
    """Two plugins combined by multiple inheritance."""


# ---------------------------------------------------------------------------------------------- parsing (pure)

@pytest.mark.parametrize("text, expected", [
    ("", {}),
    ("   ", {}),
    ("num_epochs=2", {"num_epochs": "2"}),
    ("num_epochs=2 num_iterations_per_epoch=3", {"num_epochs": "2", "num_iterations_per_epoch": "3"}),
    ("a=1,b=2", {"a": "1", "b": "2"}),
    ("a = 1 ,  b=2,", {"a": "1", "b": "2"}),
    ("\n a=1\n\tb=x\n", {"a": "1", "b": "x"}),
    ("axes=(0, 1), lr=1e-3", {"axes": "(0, 1)", "lr": "1e-3"}),
    ("name='a b' c=[1, 2]", {"name": "'a b'", "c": "[1, 2]"}),
])
def test_parse_pairs(text, expected):
    assert parse_pairs(text) == expected


@pytest.mark.parametrize("text, message", [
    ("num_epochs", "key=value"),
    ("2=3", "key=value"),
    ("a=1 a=2", "given twice"),
])
def test_parse_pairs_errors(text, message):
    with pytest.raises(SettingsError, match=message):
        parse_pairs(text)


@pytest.mark.parametrize("raw, default, expected", [
    ("2", 1, 2),
    ("1_000", 1, 1000),
    ("2", 1.0, 2.0),
    ("1e-3", 0.1, 0.001),
    ("true", False, True),
    ("T", False, True),
    ("yes", False, True),
    ("0", True, False),
    ("False", True, False),
    ("(0, 1)", (0, 1, 2), (0, 1)),
    ("[0, 1]", (0, 1, 2), (0, 1)),
    ("()", (0,), ()),
    ("[1, 2]", [0], [1, 2]),
    ("abc", "x", "abc"),
    ("'a b'", "x", "a b"),
    ("3", "x", "3"),
    ("0.5", None, 0.5),
])
def test_parse_value(raw, default, expected):
    value = parse_value(raw, default)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("raw, default", [
    ("2.5", 1),
    ("abc", 1),
    ("True", 1),
    ("abc", 1.0),
    ("maybe", True),
    ("2", True),
    ("3", (0, 1)),
    ("(0,", (0, 1)),
])
def test_parse_value_errors(raw, default):
    with pytest.raises(ValueError):
        parse_value(raw, default)


def test_settings_are_collected_along_the_mro():
    base = declared_settings(nnUNetTrainerFracture)
    assert base["num_epochs"] == 1000 and base["initial_lr"] == 1e-2
    probe = declared_settings(nnUNetTrainerFractureProbe)
    assert list(probe)[:len(base)] == list(base)  # base classes first
    assert probe["num_epochs"] == 7 and probe["tag"] == "probe" and probe["lambda_outside"] == 1.0
    both = declared_settings(nnUNetTrainerFractureBoth)
    assert set(both) == set(probe) | {"margin"}


def test_a_declared_setting_needs_a_default():
    class nnUNetTrainerFractureBroken(nnUNetTrainerFracture):
        settings = ("forgotten",)

    with pytest.raises(TypeError, match="forgotten"):
        declared_settings(nnUNetTrainerFractureBroken)


def test_resolve_settings_table():
    values, from_env = resolve_settings(nnUNetTrainerFractureProbe,
                                        "num_epochs=3, tag='x y' lambda_outside=2 mirror_axes=(0, 1)")
    assert values["num_epochs"] == 3 and values["tag"] == "x y"
    assert values["lambda_outside"] == 2.0 and isinstance(values["lambda_outside"], float)
    assert values["mirror_axes"] == (0, 1) and values["initial_lr"] == 1e-2
    assert from_env == {"num_epochs", "tag", "lambda_outside", "mirror_axes"}


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(SettingsError) as error:
        resolve_settings(nnUNetTrainerFracture, "lambda_outside=1")
    message = str(error.value)
    assert "nnUNetTrainerFracture has no setting 'lambda_outside'" in message
    assert "num_epochs (int, default 1000)" in message and "initial_lr (float, default 0.01)" in message
    # the same key is fine for the trainer that declares it
    assert resolve_settings(nnUNetTrainerFractureProbe, "lambda_outside=1")[0]["lambda_outside"] == 1.0


def test_bad_value_names_the_setting():
    with pytest.raises(SettingsError, match=r"bad value '1.5' for nnUNetTrainerFracture.num_epochs: expected int.*"
                                            r"Known settings: num_epochs"):
        resolve_settings(nnUNetTrainerFracture, "num_epochs=1.5")


def test_the_environment_is_read_lazily(monkeypatch: pytest.MonkeyPatch):
    """Importing the trainers (as nnU-Net's look-up does for every command) never reads the variable."""
    monkeypatch.setenv(ENV_VAR, "this is not valid")
    subprocess.run([sys.executable, "-c", "import nnunet_fracture.trainers"], check=True)
    with pytest.raises(SettingsError, match="cannot read 'this is not valid'"):
        resolve_settings(nnUNetTrainerFracture)


# ---------------------------------------------------------------------------------------------- trainers

@pytest.fixture
def dataset(mask_dataset: Path) -> Path:
    """This test's preprocessed dataset folder, with tiny plans written beside the default ones."""
    return mask_dataset


def test_base_defaults_match_nnunet(dataset: Path):
    """The base re-declares nnU-Net's hyperparameters; they must equal what nnU-Net's __init__ sets."""
    stock = make_trainer(nnUNetTrainer, dataset)
    for name, default in declared_settings(nnUNetTrainerFracture).items():
        if name != "final_validation":  # the plugin's own: nnUNetv2_train always validates
            assert getattr(stock, name) == default, name
    assert nnUNetTrainerFracture.final_validation is True


def test_class_defaults_replace_nnunet_instance_attributes(dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = make_trainer(nnUNetTrainerFractureProbe, dataset)
    assert trainer.num_epochs == 7 and "num_epochs" in vars(trainer)  # nnU-Net's 1000 replaced
    assert trainer.tag == "probe" and trainer.num_iterations_per_epoch == 250
    assert trainer.settings_in_effect["num_epochs"] == 7 and trainer.launch["from_env"] == []


def test_environment_override_wins_and_is_logged(dataset: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=3 lambda_outside=0.5, margin=2")
    trainer = make_trainer(nnUNetTrainerFractureBoth, dataset)
    assert (trainer.num_epochs, trainer.lambda_outside, trainer.margin) == (3, 0.5, 2.0)
    log = Path(trainer.log_file).read_text(encoding="utf-8")
    line = f"nnunet_fracture {nnunet_fracture.__version__} nnUNetTrainerFractureBoth settings: "
    assert log.count(line) == 1  # applied and logged once, although two plugin classes are combined
    logged = log.split(line)[1].splitlines()[0]
    assert "num_epochs=3 (env)" in logged and "lambda_outside=0.5 (env)" in logged and "margin=2.0 (env)" in logged
    assert "tag='probe'," in logged and "initial_lr=0.01," in logged and "mirror_axes=(0, 1, 2)" in logged


def test_bad_environment_fails_before_creating_output(dataset: Path, nnunet_env: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, "num_epoch=3")
    with pytest.raises(SettingsError, match="no setting 'num_epoch'.*num_epochs"):
        make_trainer(nnUNetTrainerFracture, dataset)
    assert not any(nnunet_env["nnUNet_results"].iterdir())


def test_extra_state_round_trip(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, "num_epochs=1 num_iterations_per_epoch=3 num_val_iterations_per_epoch=1")
    trainer = make_trainer(nnUNetTrainerFractureProbe, dataset)
    trainer.run_training()
    assert trainer.steps_seen == 3
    final = Path(trainer.output_folder) / "checkpoint_final.pth"
    saved = torch.load(final, map_location="cpu", weights_only=False)
    assert saved["optimizer_state"][CHECKPOINT_KEY]["steps_seen"] == 3

    monkeypatch.setenv(ENV_VAR, "num_epochs=2 tag=resumed")
    fresh = make_trainer(nnUNetTrainerFractureProbe, dataset)
    fresh.load_checkpoint(str(final))
    assert fresh.steps_seen == 3 and fresh.current_epoch == 1
    [first] = fresh.run_history
    assert first["settings"]["num_epochs"] == 1 and first["settings"]["num_iterations_per_epoch"] == 3
    assert first["from_env"] == ["num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch"]
    assert first["trainer"] == "nnUNetTrainerFractureProbe" and first["start_epoch"] == 0
    assert first["plugin_version"] == nnunet_fracture.__version__
    now = fresh.get_extra_state()["run_history"]
    assert len(now) == 2 and now[-1]["settings"]["tag"] == "resumed"
    assert "settings changed since: num_epochs: 1 -> 2; num_iterations_per_epoch: 3 -> 250; " \
           "num_val_iterations_per_epoch: 1 -> 50; tag: 'probe' -> 'resumed'" in Path(fresh.log_file).read_text(encoding="utf-8")
    for a, b in zip(trainer.network.parameters(), fresh.network.parameters()):
        assert torch.equal(a, b)

    # a stock nnU-Net trainer loads the checkpoint (its optimizer ignores nothing it does not know)
    stock = make_trainer(nnUNetTrainer, dataset)
    stock.load_checkpoint(str(final))
    assert stock.current_epoch == 1

    # a checkpoint without plugin state (e.g. from the stock trainer) loads and leaves the history empty
    saved["optimizer_state"].pop(CHECKPOINT_KEY)
    torch.save(saved, tmp_path / "stock.pth")
    plain = make_trainer(nnUNetTrainerFractureProbe, dataset)
    plain.load_checkpoint(str(tmp_path / "stock.pth"))
    assert plain.run_history == [] and plain.steps_seen == 0


@pytest.mark.slow
def test_stock_commands_train_resume_and_predict(dataset: Path, nnunet_env: dict[str, Path], tmp_path: Path):
    """nnUNetv2_train (with its final validation), --c with a longer schedule and final_validation=false (nnU-Net's
    validation is skipped), then nnUNetv2_predict."""
    import SimpleITK as sitk

    env = quiet_env()
    train = ["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", "nnUNetTrainerFracture",
             "-p", "nnUNetPlansTiny", "-device", "cpu"]
    env[ENV_VAR] = "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1"
    log = tmp_path / "commands.log"
    first = run_stock(train, log, env)
    assert "num_epochs=1 (env)" in first
    fold = nnunet_env["nnUNet_results"] / DATASET_NAME / "nnUNetTrainerFracture__nnUNetPlansTiny__3d_fullres" / "fold_0"
    assert (fold / "validation" / "summary.json").is_file()  # the spawn-pool validation ran on CPU

    validated = (fold / "validation" / "summary.json").stat().st_mtime_ns
    env[ENV_VAR] = "num_epochs=2 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 final_validation=false"
    second = run_stock(train + ["--c"], log, env)
    assert "settings changed since: num_epochs: 1 -> 2" in second
    assert "final validation skipped (final_validation=False)" in second
    assert (fold / "validation" / "summary.json").stat().st_mtime_ns == validated  # not run again
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    history = checkpoint["optimizer_state"][CHECKPOINT_KEY]["run_history"]
    assert [(h["start_epoch"], h["settings"]["num_epochs"]) for h in history] == [(0, 1), (1, 2)]
    assert checkpoint["current_epoch"] == 2 and checkpoint["trainer_name"] == "nnUNetTrainerFracture"
    logs = "".join(p.read_text(encoding="utf-8") for p in fold.glob("training_log_*.txt"))
    assert f"nnunet_fracture {nnunet_fracture.__version__} nnUNetTrainerFracture settings: num_epochs=1 (env)" in logs

    images = tmp_path / "images"
    images.mkdir()
    raw_images = nnunet_env["nnUNet_raw"] / DATASET_NAME / "imagesTr"
    for case in ("case0", "case3"):
        shutil.copy(raw_images / f"{case}_0000.nii.gz", images)
    out = tmp_path / "predictions"
    run_stock(["nnUNetv2_predict", "-i", str(images), "-o", str(out), "-d", str(DATASET_ID), "-c", "3d_fullres",
               "-f", "0", "-tr", "nnUNetTrainerFracture", "-p", "nnUNetPlansTiny", "-device", "cpu",
               "--save_probabilities"], log, env)
    for case in ("case0", "case3"):
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(images / f"{case}_0000.nii.gz")))
        segmentation = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
        probabilities = np.load(out / f"{case}.npz")["probabilities"]
        assert probabilities.shape == (2, *image.shape) and segmentation.shape == image.shape
        assert probabilities.min() >= 0 and probabilities.max() <= 1
        np.testing.assert_allclose(probabilities.sum(0), 1, atol=1e-4)
        np.testing.assert_array_equal(segmentation, probabilities.argmax(0))


@pytest.mark.parametrize("text, message", [
    ("num_epochs=-5", r"nnUNetTrainerFracture.num_epochs = -5 is out of range: it must be >= 1"),
    ("oversample_foreground_percent=2.0", r"oversample_foreground_percent = 2.0 is out of range: it must be between "
                                          r"0.0 and 1.0"),
    ("save_every=0", r"save_every = 0 is out of range: it must be >= 1"),
    ("initial_lr=-1", r"initial_lr = -1.0 is out of range"),
])
def test_out_of_range_settings_are_refused(text: str, message: str):
    with pytest.raises(SettingsError, match=message):
        resolve_settings(nnUNetTrainerFracture, text)


def test_named_values_are_checked_before_anything_is_written(nnunet_env: dict[str, Path], box_dataset: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    from nnunet_fracture.trainers import nnUNetTrainerWeakBBox

    monkeypatch.setenv(ENV_VAR, "bag_aggregation=foo")
    with pytest.raises(SettingsError, match=r"bag_aggregation = 'foo' is not one of 'mean', 'max', 'smooth_max'"):
        make_trainer(nnUNetTrainerWeakBBox, box_dataset)
    assert not any(nnunet_env["nnUNet_results"].iterdir())  # no fold folder, no log
