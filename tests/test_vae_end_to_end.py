"""The VAE anomaly prior end to end through the stock commands: the session's tiny weak-box dataset (written by
the plugin's converter, planned by the stock command: tests/weak_box_tiny_dataset.py; phantom -> convert is
tests/test_end_to_end.py's part) -> stock nnUNetv2_train -tr nnUNetTrainerNormalVAE (and --c) -> nnunet-fracture
vae-error -> stock plan/preprocess of the two-channel dataset -> stock nnUNetv2_train -tr nnUNetTrainerWeakBBox
with L4 on -> vae-error --images for new cases -> stock nnUNetv2_predict. Planning runs as a subprocess; training
and prediction call the stock entry points in this process (tests/stock_entry.py)."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.cli import main
from nnunet_fracture.stock_commands import run_stock
from stock_entry import run_entry_point
from weak_box_tiny_dataset import DATASETS, install_weak

pytestmark = pytest.mark.slow

SOURCE, WITH_E = str(DATASETS["box"][0]), "512"
SHORT = "num_epochs={} num_iterations_per_epoch=2 num_val_iterations_per_epoch=1"


def test_vae_prior_through_stock_commands(weak_dataset_cache, nnunet_env, tmp_path):
    log = tmp_path / "commands.log"
    name = install_weak(weak_dataset_cache("box"), "box", nnunet_env)
    assert main(["tiny-plans", SOURCE, "--features", "8", "--patch", "16"]) == 0

    vae_settings = SHORT + " vae_box_margin=1"
    train = ["nnUNetv2_train", SOURCE, "3d_fullres", "0", "-tr", "nnUNetTrainerNormalVAE", "-p", "nnUNetPlansTiny",
             "-device", "cpu"]
    out = run_entry_point(train, log, env={"NNUNET_FRACTURE_SETTINGS": vae_settings.format(1)})
    assert "VAE final validation" in out
    out = run_entry_point(train + ["--c"], log, env={"NNUNET_FRACTURE_SETTINGS": vae_settings.format(2)})
    assert "checkpoint restored after 1 earlier launch(es)" in out and "Epoch 1" in out and "Epoch 0" not in out
    model = nnunet_env["nnUNet_results"] / name / "nnUNetTrainerNormalVAE__nnUNetPlansTiny__3d_fullres"
    assert json.loads((model / "fold_0" / "validation" / "vae_summary.json").read_text(encoding="utf-8"))["pooled"]

    assert main(["vae-error", "--vae", str(model), "--dataset", SOURCE, "--out-dataset", WITH_E,
                 "--device", "cpu"]) == 0
    [raw] = nnunet_env["nnUNet_raw"].glob(f"Dataset{WITH_E}_*")
    assert json.loads((raw / "dataset.json").read_text(encoding="utf-8"))["channel_names"] == {"0": "CT", "1": "noNorm"}

    run_stock(["nnUNetv2_plan_and_preprocess", "-d", WITH_E, "-c", "3d_fullres", "-np", "1",
               "--verify_dataset_integrity"], log, env={"nnUNet_n_proc_DA": "1"})
    plans = json.loads((nnunet_env["nnUNet_preprocessed"] / raw.name / "nnUNetPlans.json").read_text(encoding="utf-8"))
    assert plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization", "NoNormalization"]
    assert main(["tiny-plans", WITH_E, "--features", "8", "--patch", "16"]) == 0
    out = run_entry_point(["nnUNetv2_train", WITH_E, "3d_fullres", "0", "-tr", "nnUNetTrainerWeakBBox", "-p",
                           "nnUNetPlansTiny", "-device", "cpu"], log,
                          env={"NNUNET_FRACTURE_SETTINGS": SHORT.format(1) + " lambda_consistency=0.5 "
                                                                             "final_validation=false"})
    assert "reads the VAE error map E from input channel 1" in out

    images = tmp_path / "new_cases"
    images.mkdir()
    for case in ("case0", "case3"):
        (images / f"{case}_0000.nii.gz").symlink_to(raw / "imagesTr" / f"{case}_0000.nii.gz")
    with_e = tmp_path / "new_cases_with_e"
    assert main(["vae-error", "--vae", str(model), "--images", str(images), "--out", str(with_e),
                 "--scale-from", WITH_E, "--device", "cpu"]) == 0
    pred = tmp_path / "pred"
    run_entry_point(["nnUNetv2_predict", "-i", with_e, "-o", pred, "-d", WITH_E, "-c", "3d_fullres", "-f", "0",
                     "-tr", "nnUNetTrainerWeakBBox", "-p", "nnUNetPlansTiny", "-device", "cpu",
                     "--save_probabilities", "--disable_tta"], log)
    for case in ("case0", "case3"):
        ct = sitk.ReadImage(str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        probabilities = np.load(pred / f"{case}.npz")["probabilities"]
        assert probabilities.shape == (1,) + sitk.GetArrayFromImage(ct).shape
