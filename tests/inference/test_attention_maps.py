"""nnunet-fracture attention-maps on a model folder laid out as nnUNetv2_train writes it (tiny plans, weights
saved by hand): CT geometry kept exactly, hand-computed constant coefficients through tiling and resampling, maps
aligned with the anatomy, case lookup, refusal of non-attention models, atomic output and --overwrite.
(The same command on models trained by the stock nnUNetv2_train: tests/trainers/test_attention_unet_trainer.py.)"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_fracture.cli import main
from nnunet_fracture.image_geometry import geometry_mismatch
from nnunet_fracture.inference.attention_maps import export_attention_maps, level_file
from nnunet_fracture.networks.attention_unet import AttentionUNet
from nnunet_fracture.trainers import nnUNetTrainerAttentionUNet
from nnunet_tiny_dataset import DATASET_ID, DATASET_NAME, install

TRAINER = "nnUNetTrainerAttentionUNet"


def write_model(results: Path, preprocessed: Path, trainer: str = TRAINER, psi_bias: float | None = None) -> Path:
    """``results/DATASET/TRAINER__nnUNetPlansTiny__3d_fullres`` with fold_0/checkpoint_final.pth of an untrained
    network (every gate constant sigmoid(psi_bias) when given)."""
    plans = json.loads((preprocessed / "nnUNetPlansTiny.json").read_text(encoding="utf-8"))
    dataset_json = json.loads((preprocessed / "dataset.json").read_text(encoding="utf-8"))
    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    if trainer == TRAINER:
        network = nnUNetTrainerAttentionUNet.build_network_architecture(manager, configuration, 1, 2, False)
        if psi_bias is not None:
            with torch.no_grad():
                for gate in network.decoder.attention_gates:
                    gate.psi.weight.zero_()
                    gate.psi.bias.fill_(psi_bias)
    else:
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        network = nnUNetTrainer.build_network_architecture(manager, configuration, 1, 2, False)
    model = results / DATASET_NAME / f"{trainer}__nnUNetPlansTiny__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(plans))
    (model / "dataset.json").write_text(json.dumps(dataset_json))
    torch.save({"network_weights": network.state_dict(), "trainer_name": trainer,
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)},
               model / "fold_0" / "checkpoint_final.pth")
    return model


def write_ct(path: Path, size_xyz=(26, 22, 14), centre_xyz=(18.0, 7.0, 9.0), radius_mm: float = 5.0) -> sitk.Image:
    """A CT with anisotropic voxels, an oblique-free but permuted/flipped direction, an off-centre bright sphere
    and no zero voxel (so nnU-Net's crop keeps everything)."""
    rng = np.random.default_rng(5)
    spacing = (0.8, 1.0, 2.0)
    k, j, i = np.mgrid[:size_xyz[2], :size_xyz[1], :size_xyz[0]]
    distance = np.sqrt(((i - centre_xyz[0]) * spacing[0]) ** 2 + ((j - centre_xyz[1]) * spacing[1]) ** 2
                       + ((k - centre_xyz[2]) * spacing[2]) ** 2)
    array = (rng.normal(0, 20, distance.shape) + 400 * (distance < radius_mm)).astype(np.int16)
    array[array == 0] = 1
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-12.5, 40.0, 7.25))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    sitk.WriteImage(image, str(path))
    return sitk.ReadImage(str(path))  # the geometry as stored in the file header (float32 spacing)


@pytest.fixture
def tiny(tiny_dataset_cache, nnunet_env) -> dict:
    from nnunet_fracture.planning.tiny_plans import write_tiny_plans

    install(tiny_dataset_cache, nnunet_env)
    write_tiny_plans(str(DATASET_ID), max_features=8, max_patch=16, batch_size=2)
    return {"preprocessed": nnunet_env["nnUNet_preprocessed"] / DATASET_NAME, "results": nnunet_env["nnUNet_results"],
            "raw": nnunet_env["nnUNet_raw"] / DATASET_NAME}


@pytest.mark.parametrize("size_xyz", [(26, 22, 14), (10, 12, 5)])  # several tiles; smaller than one patch (padded)
def test_constant_gates_give_sigmoid_of_the_bias_on_the_exact_ct_grid(tiny, tmp_path: Path, size_xyz):
    model = write_model(tiny["results"], tiny["preprocessed"], psi_bias=-0.5)
    ct_file = tmp_path / "ct_0000.nii.gz"
    ct = write_ct(ct_file, size_xyz=size_xyz, centre_xyz=(5.0, 5.0, 2.0))
    prov = export_attention_maps(model, ct_file, tmp_path / "out", device="cpu")
    n_levels = len(json.loads((model / "plans.json").read_text(encoding="utf-8"))["configurations"]["3d_fullres"]["architecture"][
        "arch_kwargs"]["features_per_stage"]) - 1
    assert [e["level"] for e in prov["levels"]] == list(range(n_levels))
    expected = 1 / (1 + math.exp(0.5))  # sigmoid(-0.5) = 0.3775406688
    for entry in prov["levels"]:
        image = sitk.ReadImage(str(tmp_path / "out" / entry["file"]))
        assert geometry_mismatch(ct, image) is None
        assert (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()) == \
            (ct.GetSize(), ct.GetSpacing(), ct.GetOrigin(), ct.GetDirection())
        assert image.GetPixelID() == sitk.sitkFloat32
        np.testing.assert_allclose(sitk.GetArrayFromImage(image), expected, atol=1e-5)
        assert (tmp_path / "out" / entry["png"]).stat().st_size > 0
    assert prov["case"] == "ct" and prov["trainer"] == TRAINER and prov["test_time_mirroring"] is False


def test_maps_are_aligned_with_the_anatomy(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # let level 0 mark the voxels the network sees as bright: nnU-Net's CT normalization clips to the dataset's
    # foreground percentiles (324..474 HU) and z-scores with its mean 400 and std 30, so the noise around 0 HU
    # becomes (324 - 400) / 30 = -2.5 and the sphere (~400 HU) ~0; after stitching and the way back to the CT grid
    # the map must cover the sphere in the CT itself
    original = AttentionUNet.forward

    def bright_voxels(self, x):
        out = original(self, x)
        maps = self.decoder.attention_maps
        if maps:
            self.decoder.attention_maps = [(x[:, :1] > -2).float(), *maps[1:]]
        return out

    monkeypatch.setattr(AttentionUNet, "forward", bright_voxels)
    model = write_model(tiny["results"], tiny["preprocessed"])
    ct = write_ct(tmp_path / "ct_0000.nii.gz")
    export_attention_maps(model, tmp_path / "ct_0000.nii.gz", tmp_path / "out", device="cpu", point_ijk=(18, 7, 9))
    marked = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / level_file(0)))) > 0.5
    sphere = sitk.GetArrayFromImage(ct) > 200
    dice = 2 * (marked & sphere).sum() / (marked.sum() + sphere.sum())
    assert sphere.sum() > 50 and dice > 0.8


def test_random_network_case_id_lookup_and_cli(tiny, tmp_path: Path, capsys):
    model = write_model(tiny["results"], tiny["preprocessed"])
    out = tmp_path / "maps" / "attention"
    assert main(["attention-maps", str(model), "case2", "--out", str(out), "--device", "cpu"]) == 0
    assert "wrote" in capsys.readouterr().out
    prov = json.loads((out / "attention_maps.json").read_text(encoding="utf-8"))
    assert prov["images"] == [str(tiny["raw"] / "imagesTr" / "case2_0000.nii.gz")]
    ct = sitk.ReadImage(prov["images"][0])
    for entry in prov["levels"]:
        values = sitk.GetArrayFromImage(sitk.ReadImage(str(out / entry["file"])))
        assert geometry_mismatch(ct, sitk.ReadImage(str(out / entry["file"]))) is None
        assert 0 <= values.min() and values.max() <= 1 and values.std() > 0
        assert entry["min"] == pytest.approx(float(values.min()))

    # atomic output: a second run refuses a non-empty folder, --overwrite replaces it, no temporary folder is left
    assert main(["attention-maps", str(model), "case2", "--out", str(out), "--device", "cpu"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["attention-maps", str(model), "case3", "--out", str(out), "--device", "cpu", "--overwrite"]) == 0
    assert json.loads((out / "attention_maps.json").read_text(encoding="utf-8"))["case"] == "case3"
    assert sorted(p.name for p in out.parent.iterdir()) == ["attention"]


def test_errors_name_the_file_and_the_fix(tiny, tmp_path: Path, capsys):
    plain = write_model(tiny["results"], tiny["preprocessed"], trainer="nnUNetTrainer")
    assert main(["attention-maps", str(plain), "case0", "--out", str(tmp_path / "a"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert str(plain / "fold_0" / "checkpoint_final.pth") in err and "no attention gates" in err
    assert "-tr nnUNetTrainerAttentionUNet" in err and "nnUNetTrainerWeakBBoxAttention" in err
    assert not (tmp_path / "a").exists()

    model = write_model(tiny["results"], tiny["preprocessed"])
    with pytest.raises(FileNotFoundError, match=r"fold_3.*folds in .*fold_0.*--fold"):
        export_attention_maps(model, "case0", tmp_path / "b", fold="3", device="cpu")
    with pytest.raises(FileNotFoundError, match=r"case 'nope' not found.*imagesTr.*Fix"):
        export_attention_maps(model, "nope", tmp_path / "b", device="cpu")
    with pytest.raises(FileNotFoundError, match="is not an nnU-Net model folder"):
        export_attention_maps(tmp_path, "case0", tmp_path / "b", device="cpu")
    with pytest.raises(ValueError, match=r"--point .* outside"):
        export_attention_maps(model, "case0", tmp_path / "b", device="cpu", point_ijk=(0, 0, 99))
    with pytest.raises(ValueError, match="would destroy the input"):
        export_attention_maps(model, "case0", model.parent, device="cpu", overwrite=True)
    assert model.is_dir()
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.tmp-*"))
