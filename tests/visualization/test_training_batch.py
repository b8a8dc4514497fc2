"""Augmented training batches from the trainer as nnU-Net builds it, and the picture of a batch."""
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from nnunet_fracture.cli import main
from nnunet_fracture.planning.tiny_plans import write_tiny_plans
from nnunet_fracture.visualization.training_batch import (IGNORE_COLOUR, LABEL_COLOURS, TrainingBatch, batch_figure,
                                                          target_layers, to_training_batch,
                                                          visualize_training_batches)
from nnunet_tiny_dataset import DATASET_ID, install
from visualization_helpers import rgb


def _near(image, colour, tol=0.03):
    return np.all(np.abs(image - np.asarray(to_rgb(colour))) < tol, axis=-1)


def test_label_map_layers_one_colour_per_box_number():
    target = np.zeros((1, 4, 5, 6), np.int16)
    target[0, 1, 1:3, 1:3] = 1
    target[0, 2, 2:4, 3:5] = 2
    target[0, 3, 0, 0] = 3  # the ignore label
    layers = target_layers(target, ignore_label=3)
    assert [layer.name for layer in layers] == ["label 1", "label 2", "ignore (3)"]
    assert [layer.colour for layer in layers] == [LABEL_COLOURS[0], LABEL_COLOURS[1], IGNORE_COLOUR]
    np.testing.assert_array_equal(layers[1].mask, target[0] == 2)


def test_region_channels_with_ignore_channel_last():
    target = np.zeros((3, 4, 5, 6), np.uint8)
    target[0, 1, 1, 1] = 1
    target[2, 0, 0, 0] = 1
    layers = target_layers(target, regions=True, ignore_label=2)
    assert [layer.name for layer in layers] == ["region 1", "ignore"]  # empty region 2 is left out


def test_deep_supervision_list_keeps_full_resolution():
    data = np.zeros((2, 1, 8, 8, 8), np.float32)
    full, half = np.zeros((2, 1, 8, 8, 8)), np.zeros((2, 1, 4, 4, 4))
    batch = to_training_batch({"data": data, "target": [full, half], "keys": ["a", "b"]})
    assert batch.target.shape == full.shape and batch.keys == ["a", "b"]
    with pytest.raises(ValueError, match="do not match"):
        to_training_batch({"data": data, "target": [half]})


def test_batch_figure_draws_each_box_number_in_its_colour():
    data = np.random.default_rng(0).normal(size=(2, 1, 12, 16, 16)).astype(np.float32)
    target = np.zeros((2, 1, 12, 16, 16), np.int16)
    target[:, 0, 3:9, 2:7, 2:7] = 1
    target[:, 0, 3:9, 9:14, 9:14] = 2
    fig = batch_figure(TrainingBatch(data, target, ["case0", "case1"]), (2.5, 1.0, 1.0), "test")
    image = rgb(fig)
    assert len(fig.axes) == 6
    assert _near(image, LABEL_COLOURS[0]).sum() > 50 and _near(image, LABEL_COLOURS[1]).sum() > 50
    assert "case1" in fig.axes[3].get_title()


def test_training_batches_from_the_stock_trainer(nnunet_env, tiny_dataset_cache, tmp_path):
    install(tiny_dataset_cache, nnunet_env)
    write_tiny_plans(str(DATASET_ID))
    written = visualize_training_batches(str(DATASET_ID), "3d_fullres", "nnUNetTrainer", "nnUNetPlansTiny", 0,
                                         tmp_path / "out", n_batches=2)
    assert [p.name for p in written] == ["batch_0.png", "batch_1.png"]
    image = rgb_from_png(written[0])
    assert image.std() > 0.05
    assert _near(image, LABEL_COLOURS[0], tol=0.05).sum() > 20  # the sphere's contour, label 1
    assert not any(nnunet_env["nnUNet_results"].iterdir())  # the trainer's log went to a scratch folder
    (tmp_path / "keep").mkdir()
    import shutil
    shutil.copy(written[0], tmp_path / "keep")


def test_sampled_batches_line_up(nnunet_env, tiny_dataset_cache):
    from nnunet_fracture.visualization.training_batch import build_trainer, sample_batches, scratch_results

    install(tiny_dataset_cache, nnunet_env)
    write_tiny_plans(str(DATASET_ID))
    with scratch_results():
        trainer = build_trainer(str(DATASET_ID), "3d_fullres", "nnUNetTrainer", "nnUNetPlansTiny", "0")
        (batch,) = sample_batches(trainer, 1)
    assert batch.data.shape[2:] == batch.target.shape[2:] == tuple(trainer.configuration_manager.patch_size)
    checked = 0
    for data, target in zip(batch.data, batch.target):
        image, sphere = data[0], target[0] > 0
        if sphere.any() and (~sphere).any():
            # the bright sphere is where its label is after augmentation: brighter inside than outside, and
            # brighter than under the label moved by 4 voxels along any axis
            inside = image[sphere].mean()
            assert inside > image[~sphere].mean() + 0.2
            for axis in range(3):
                for shift in (-4, 4):
                    assert inside > image[np.roll(sphere, shift, axis=axis)].mean()
            checked += 1
    assert checked >= 1  # nnU-Net oversamples foreground in the last sample of a batch


def test_cli_training_batch_and_report(nnunet_env, tiny_dataset_cache, tmp_path, capsys):
    install(tiny_dataset_cache, nnunet_env)
    write_tiny_plans(str(DATASET_ID))
    out = tmp_path / "out"
    assert main(["visualize", "--training-batch", str(DATASET_ID), "--plans", "nnUNetPlansTiny", "--fold", "0",
                 "--batches", "1", "--out", str(out)]) == 0
    assert (out / "training_batches" / "batch_0.png").is_file()
    assert 'src="training_batches/batch_0.png"' in (out / "index.html").read_text(encoding="utf-8")


def test_unknown_trainer_and_missing_plans(nnunet_env, tiny_dataset_cache, tmp_path, capsys):
    install(tiny_dataset_cache, nnunet_env)
    out = str(tmp_path / "out")
    assert main(["visualize", "--training-batch", str(DATASET_ID), "--plans", "nnUNetPlansNope", "--out", out]) == 1
    assert "nnunet-fracture tiny-plans" in capsys.readouterr().err
    assert main(["visualize", "--training-batch", str(DATASET_ID), "--trainer", "nnUNetTrainerNope",
                 "--out", out]) == 1
    assert "nnUNetTrainerNope" in capsys.readouterr().err


def rgb_from_png(path):
    from matplotlib.image import imread

    return imread(path)[..., :3].astype(np.float64)
