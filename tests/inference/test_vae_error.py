"""``vae-error``: the error channel lies on the CT's exact grid, the dataset keeps everything of its source, the
normalisation saturates the expected share of normal tissue, new images get the recorded scale."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
from nnunet_fracture.inference.vae_error import write_error_dataset, write_error_images
from nnunet_fracture.training.settings import ENV_VAR
from weak_box_tiny_dataset import DATASETS, install_weak

SOURCE_ID, OUT_ID = 980, 981


def odd_geometry_case(case_id: str, seed: int, boxed: bool) -> CaseRecord:
    """A CT with anisotropic spacing, an offset origin and an oblique direction, unlike the VAE's training data."""
    rng = np.random.default_rng(seed)
    shape = (14, 22, 20)  # z, y, x
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    bone = ((y - 11) ** 2 + (x - 10) ** 2) < 25
    array = (rng.normal(0, 30, shape) + 500 * bone).astype(np.int16)
    mask = np.zeros(shape, dtype=np.uint8)
    boxes = []
    if boxed:
        mask[5:8, 9:13, 8:12] = 1
        boxes.append(VoxelBox((7, 8, 4), (12, 14, 9)))
    image = sitk.GetImageFromArray(array)
    angle = np.deg2rad(30)
    image.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1))
    image.SetSpacing((0.9, 1.1, 1.6))
    image.SetOrigin((-10.0, 5.5, 20.25))
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(image)
    return CaseRecord(case_id, image, boxes, mask=mask_image)


@pytest.fixture
def vae_model(weak_dataset_cache, nnunet_env, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A VAE trained for one short epoch on the tiny weak-box dataset (its model folder)."""
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans
    from nnunet_fracture.trainers import nnUNetTrainerNormalVAE

    name = install_weak(weak_dataset_cache("box"), "box", nnunet_env)
    write_tiny_plans(str(DATASETS["box"][0]), max_features=8, max_patch=16, batch_size=2)
    dataset = nnunet_env["nnUNet_preprocessed"] / name
    plans = json.loads((dataset / "nnUNetPlansTiny.json").read_text(encoding="utf-8"))
    plans["continue_training"] = False
    monkeypatch.setenv(ENV_VAR, "num_epochs=1 num_iterations_per_epoch=2 num_val_iterations_per_epoch=1 "
                                "vae_box_margin=1")
    trainer = nnUNetTrainerNormalVAE(plans, "3d_fullres", 0, json.loads((dataset / "dataset.json").read_text(encoding="utf-8")),
                                     torch.device("cpu"))
    trainer.run_training()
    return Path(trainer.output_folder_base)


def source_dataset(nnunet_env) -> Path:
    cases = [odd_geometry_case(f"odd{i}", i, boxed=i != 2) for i in range(3)]
    folder = write_raw_dataset(cases, SOURCE_ID, "OddGeometry", weak="box", raw_root=nnunet_env["nnUNet_raw"])
    (folder / "imagesTs").mkdir()
    sitk.WriteImage(odd_geometry_case("new0", 7, boxed=True).image, str(folder / "imagesTs" / "new0_0000.nii.gz"))
    return folder


def geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def test_error_channel_on_the_ct_grid_and_dataset_kept(vae_model: Path, nnunet_env):
    source = source_dataset(nnunet_env)
    out = write_error_dataset(SOURCE_ID, OUT_ID, vae_model, percentile=90.0, device=torch.device("cpu"))
    assert out == nnunet_env["nnUNet_raw"] / f"Dataset{OUT_ID}_OddGeometryVAE"
    assert not list(nnunet_env["nnUNet_raw"].glob(".*"))  # no staging folder left behind

    for split, cases in (("imagesTr", ["odd0", "odd1", "odd2"]), ("imagesTs", ["new0"])):
        for case in cases:
            ct = sitk.ReadImage(str(out / split / f"{case}_0000.nii.gz"))
            error = sitk.ReadImage(str(out / split / f"{case}_0001.nii.gz"))
            assert geometry(error) == geometry(ct)  # size, spacing, origin, direction: exactly
            assert error.GetPixelID() == sitk.sitkFloat32
            values = sitk.GetArrayFromImage(error)
            assert values.min() >= 0.0 and values.max() <= 1.0
            assert (out / split / f"{case}_0000.nii.gz").read_bytes() == \
                   (source / split / f"{case}_0000.nii.gz").read_bytes()
    for kept in ("boxes.json", "labelsTr/odd0.nii.gz", "labelsTr/odd2.nii.gz", "groundTruthTr/odd1.nii.gz"):
        assert (out / kept).read_bytes() == (source / kept).read_bytes()

    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    source_meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    assert meta["channel_names"] == {"0": "CT", "1": "noNorm"}
    assert meta["labels"] == source_meta["labels"] and meta["numTraining"] == 3
    recorded = meta["nnunet_fracture"]["vae_error"]
    assert recorded["channel"] == 1 and recorded["percentile"] == 90.0 and recorded["scale"] > 0
    assert recorded["folds"] == [0] and Path(recorded["model"]) == vae_model.absolute()
    assert meta["nnunet_fracture"]["weak"] == "box"  # the source provenance stays

    # E = clip(error / p90 of normal tissue): about 10 % of the normal training voxels saturate at 1
    saturated, normal = 0, 0
    for case in ("odd0", "odd1", "odd2"):
        e = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTr" / f"{case}_0001.nii.gz")))
        outside = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / f"{case}.nii.gz"))) == 0
        saturated += int((e[outside] >= 1.0).sum())
        normal += int(outside.sum())
    assert 0.08 <= saturated / normal <= 0.12

    with pytest.raises(FileExistsError, match="--overwrite"):
        write_error_dataset(SOURCE_ID, OUT_ID, vae_model, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="already holds a VAE error channel"):
        write_error_dataset(OUT_ID, 982, vae_model, device=torch.device("cpu"))

    # new images get the recorded scale: the same CT gives the same E as in the dataset
    images = nnunet_env["nnUNet_raw"].parent / "new_images"
    images.mkdir()
    (images / "odd1_0000.nii.gz").write_bytes((source / "imagesTr" / "odd1_0000.nii.gz").read_bytes())
    target = nnunet_env["nnUNet_raw"].parent / "new_images_with_e"
    assert main(["vae-error", "--vae", str(vae_model), "--images", str(images), "--out", str(target),
                 "--scale-from", str(OUT_ID), "--device", "cpu"]) == 0
    assert sorted(p.name for p in target.iterdir()) == ["odd1_0000.nii.gz", "odd1_0001.nii.gz", "vae_error.json"]
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(target / "odd1_0001.nii.gz"))),
                               sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTr" / "odd1_0001.nii.gz"))),
                               atol=1e-5)
    assert main(["vae-error", "--vae", str(vae_model), "--images", str(images), "--out", str(target),
                 "--scale", "1.0", "--device", "cpu"]) == 1  # non-empty --out without --overwrite


def test_clear_errors(nnunet_env, tmp_path: Path):
    from nnunet_fracture.inference.vae_error_model import ErrorMapModel

    with pytest.raises(FileNotFoundError, match="dataset.json does not exist"):
        write_error_dataset(str(tmp_path), 5, tmp_path / "no_model")
    with pytest.raises(FileNotFoundError, match="-tr nnUNetTrainerNormalVAE"):
        ErrorMapModel(tmp_path / "no_model")
    with pytest.raises(ValueError, match="exactly one of --scale"):
        write_error_images(tmp_path, tmp_path / "out", tmp_path / "no_model")
    with pytest.raises(ValueError, match="percentile"):
        write_error_dataset(str(tmp_path), 5, tmp_path, percentile=0)
