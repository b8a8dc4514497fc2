"""The foundation's promise, end to end on CPU: phantom -> convert -> stock plan/preprocess -> tiny plans ->
stock nnUNetv2_train with a plugin trainer on a short schedule -> stock nnUNetv2_predict --save_probabilities,
fully supervised (--weak mask); the weak-box path is tested in tests/trainers/test_weak_box_trainer.py.
"""
import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.cli import main
from nnunet_fracture.stock_commands import run_stock

pytestmark = pytest.mark.slow

DATASET_ID = "501"
# nnU-Net's final validation (not looked at here) would cost more than the training
SHORT_SCHEDULE = "num_epochs=1 num_iterations_per_epoch=3 num_val_iterations_per_epoch=1 final_validation=false"


def test_phantom_to_probabilities_through_stock_commands(nnunet_env, tmp_path):
    log = tmp_path / "commands.log"
    # coarse anisotropic voxels keep CPU planning, validation and sliding-window prediction short
    assert main(["phantom", str(tmp_path / "phantom"), "--cases", "5", "--seed", "7",
                 "--spacing", "2.0", "2.0", "3.0"]) == 0
    assert main(["convert", "generic", str(tmp_path / "phantom"), "--dataset-id", DATASET_ID,
                 "--name", "EndToEnd", "--weak", "mask"]) == 0
    raw = nnunet_env["nnUNet_raw"] / "Dataset501_EndToEnd"

    run_stock(["nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", "3d_fullres", "-np", "1",
               "--verify_dataset_integrity"], log, env={"nnUNet_n_proc_DA": "1"})  # the planner needs >= 1
    assert main(["tiny-plans", DATASET_ID]) == 0
    run_stock(["nnUNetv2_train", DATASET_ID, "3d_fullres", "0", "-tr", "nnUNetTrainerFracture",
               "-p", "nnUNetPlansTiny", "-device", "cpu"], log, env={"NNUNET_FRACTURE_SETTINGS": SHORT_SCHEDULE})
    model = (nnunet_env["nnUNet_results"] / "Dataset501_EndToEnd"
             / "nnUNetTrainerFracture__nnUNetPlansTiny__3d_fullres")
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()

    inputs = tmp_path / "predict_in"
    inputs.mkdir()
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in (raw / "imagesTr").glob("*_0000.nii.gz"))[:2]
    for case in cases:
        (inputs / f"{case}_0000.nii.gz").symlink_to(raw / "imagesTr" / f"{case}_0000.nii.gz")
    out = tmp_path / "predict_out"
    run_stock(["nnUNetv2_predict", "-i", inputs, "-o", out, "-d", DATASET_ID, "-c", "3d_fullres", "-f", "0",
               "-tr", "nnUNetTrainerFracture", "-p", "nnUNetPlansTiny", "-device", "cpu",
               "--save_probabilities", "--disable_tta"], log)

    for case in cases:
        image = sitk.ReadImage(str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        segmentation = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        assert segmentation.GetSize() == image.GetSize()
        assert np.allclose(segmentation.GetSpacing(), image.GetSpacing())
        assert np.allclose(segmentation.GetOrigin(), image.GetOrigin())
        assert np.allclose(segmentation.GetDirection(), image.GetDirection())
        assert set(np.unique(sitk.GetArrayFromImage(segmentation))) <= {0, 1}
        probabilities = np.load(out / f"{case}.npz")["probabilities"]
        assert probabilities.shape == (2,) + sitk.GetArrayFromImage(image).shape
        assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
        np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-3)

    # the plugin's evaluation reads the same folder (ground truth of the predicted cases only)
    gt = tmp_path / "gt"
    gt.mkdir()
    for case in cases:
        (gt / f"{case}.nii.gz").symlink_to(raw / "groundTruthTr" / f"{case}.nii.gz")
    assert main(["evaluate", str(out), str(gt), "--out", str(tmp_path / "report")]) == 0
    assert len((tmp_path / "report" / "metrics.csv").read_text(encoding="utf-8").splitlines()) == 1 + len(cases)
