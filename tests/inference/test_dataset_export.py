"""``pseudo-masks --export-dataset``: the pseudo-masks as labels of a new raw dataset (with an optional ignore band),
installed whole or not at all (the cases: ``pseudo_mask_cases``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.inference.label_options import LabelOptions
from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks

from pseudo_mask_cases import B1_HIGH, DIRECTION, ORIGIN, SPACING, fold0, fold1, mask_from, prediction_folder, read


def test_export_dataset(src, nnunet_env, tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    folds = [prediction_folder(tmp_path / "pred_f0", fold0()), prediction_folder(tmp_path / "pred_f1", fold1())]
    prov = write_pseudo_masks(folds, 501, tmp_path / "out", rule="otsu", export_dataset=502, export_name="Pseudo")
    ds = nnunet_env["nnUNet_raw"] / "Dataset502_Pseudo"
    assert prov["export_dataset"] == str(ds)
    assert sorted(p.name for p in ds.iterdir()) == ["boxes.json", "dataset.json", "groundTruthTr", "imagesTr",
                                                    "labelsTr", "pseudo_masks.json", "vertebraeTr"]
    assert sorted(p.name for p in (ds / "imagesTr").iterdir()) == ["frac_0000.nii.gz", "normal_0000.nii.gz",
                                                                   "two_0000.nii.gz"]
    assert (ds / "imagesTr" / "frac_0000.nii.gz").read_bytes() == (src / "imagesTr" / "frac_0000.nii.gz").read_bytes()
    assert [p.name for p in (ds / "groundTruthTr").iterdir()] == ["frac.nii.gz"]
    assert [p.name for p in (ds / "vertebraeTr").iterdir()] == ["frac.nii.gz"]
    for case in ("frac", "normal", "two"):
        label = sitk.ReadImage(str(ds / "labelsTr" / f"{case}.nii.gz"))
        assert label.GetPixelID() == sitk.sitkUInt8 and np.allclose(label.GetOrigin(), ORIGIN)
        assert np.allclose(label.GetDirection(), DIRECTION) and np.allclose(label.GetSpacing(), SPACING)
        assert np.array_equal(sitk.GetArrayFromImage(label), read(tmp_path / "out" / "masks" / f"{case}.nii.gz"))
    meta = json.loads((ds / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "fracture": 1} and "regions_class_order" not in meta
    assert meta["channel_names"] == {"0": "CT"} and meta["file_ending"] == ".nii.gz" and meta["numTraining"] == 3
    block = meta["nnunet_fracture"]
    assert block["weak"] == "pseudo" and block["source_dataset"] == str(src)
    assert block["source_provenance"]["weak"] == "box" and block["pseudo_masks"] == prov
    assert json.loads((ds / "pseudo_masks.json").read_text(encoding="utf-8")) == prov
    assert json.loads((ds / "boxes.json").read_text(encoding="utf-8")) == json.loads((src / "boxes.json").read_text(encoding="utf-8"))
    verify_dataset_integrity(str(ds), num_processes=1)

    with pytest.raises(FileExistsError, match="Dataset502_Pseudo.*--overwrite"):
        write_pseudo_masks(folds, 501, tmp_path / "out2", export_dataset=502, export_name="Other")
    assert not (tmp_path / "out2").exists()
    write_pseudo_masks(folds, 501, tmp_path / "out", rule="fixed", export_dataset=502, export_name="Other",
                       overwrite=True)
    assert sorted(p.name for p in nnunet_env["nnUNet_raw"].iterdir()) == ["Dataset501_Src", "Dataset502_Other"]


def test_export_with_an_ignore_band(src, nnunet_env, tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    fold = prediction_folder(tmp_path / "pred_f0", fold0())
    prov = write_pseudo_masks([fold], 501, tmp_path / "out", rule="fixed", export_dataset=502, export_name="Pseudo",
                              options=LabelOptions(ignore_band=(0.25, 0.5)))
    ds = nnunet_env["nnUNet_raw"] / "Dataset502_Pseudo"
    # frac: the four B1 voxels >= 0.5 are fracture; B3's 0.3 and 0.35 lie in [0.25, 0.5) -> ignore; B1's 0.1 and
    # B2's 0.02 stay background, and so does the 0.6 outside every box. two: A keeps its 0.6s, B its 0.9 and the
    # 0.6 at i 2-3 (in A too); the 0.2 at i 4 is below the band.
    expected_frac = mask_from(B1_HIGH)
    expected_frac[3, 4, 1] = expected_frac[3, 4, 2] = 2
    assert np.array_equal(read(ds / "labelsTr" / "frac.nii.gz"), expected_frac)
    assert np.array_equal(read(ds / "labelsTr" / "two.nii.gz"), mask_from([(0, 0, i) for i in (0, 1, 2, 3, 5)]))
    assert not read(ds / "labelsTr" / "normal.nii.gz").any()  # no box: nothing uncertain
    meta = json.loads((ds / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "fracture": 1, "ignore": 2}
    assert prov["ignore_band"] == [0.25, 0.5]
    # the pseudo-masks themselves stay 0/1
    assert set(np.unique(read(tmp_path / "out" / "masks" / "frac.nii.gz"))) == {0, 1}
    verify_dataset_integrity(str(ds), num_processes=1)


def test_an_ignore_band_needs_an_export_and_an_order(src, tmp_path):
    fold = prediction_folder(tmp_path / "pred_f0", fold0())
    with pytest.raises(ValueError, match="--ignore-band only shapes the exported labels"):
        write_pseudo_masks([fold], 501, tmp_path / "out", options=LabelOptions(ignore_band=(0.2, 0.5)))
    with pytest.raises(ValueError, match="LOW < HIGH"):
        write_pseudo_masks([fold], 501, tmp_path / "out", export_dataset=502, export_name="P",
                           options=LabelOptions(ignore_band=(0.5, 0.2)))
    assert not (tmp_path / "out").exists()


def test_failing_export_install_restores_the_old_output(src, nnunet_env, tmp_path, monkeypatch):
    from nnunet_fracture.inference.dataset_export import DatasetExport

    pred = prediction_folder(tmp_path / "pred", fold0())
    out = tmp_path / "out"
    write_pseudo_masks([pred], src, out)

    def fail(self):
        raise OSError("disk full")

    monkeypatch.setattr(DatasetExport, "install", fail)
    with pytest.raises(OSError, match="disk full"):
        write_pseudo_masks([pred], src, out, rule="otsu", export_dataset=502, export_name="Pseudo", overwrite=True)
    assert json.loads((out / "pseudo_masks.json").read_text(encoding="utf-8"))["rule"] == "fixed"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert sorted(p.name for p in nnunet_env["nnUNet_raw"].iterdir()) == ["Dataset501_Src"]


def test_export_with_an_ignore_ring_keeps_masks_too_thin_for_it(src, nnunet_env, tmp_path):
    fold = prediction_folder(tmp_path / "pred_f0", fold0())
    prov = write_pseudo_masks([fold], 501, tmp_path / "out", rule="fixed", export_dataset=502, export_name="Ring",
                              options=LabelOptions(ignore_ring=1))
    ds = nnunet_env["nnUNet_raw"] / "Dataset502_Ring"
    # B1's four voxels >= 0.5 form an L one voxel thick: eroding it leaves nothing, so the box keeps its mask
    assert np.array_equal(read(ds / "labelsTr" / "frac.nii.gz"), mask_from(B1_HIGH))
    meta = json.loads((ds / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "fracture": 1, "ignore": 2}
    assert prov["ignore_ring"] == 1 and prov["ignore_band"] is None


def test_an_ignore_ring_needs_an_export_and_a_whole_number(src, tmp_path):
    fold = prediction_folder(tmp_path / "pred_f0", fold0())
    with pytest.raises(ValueError, match="--ignore-ring only shapes the exported labels"):
        write_pseudo_masks([fold], 501, tmp_path / "out", options=LabelOptions(ignore_ring=1))
    with pytest.raises(ValueError, match="--ignore-ring must be a whole number of voxels >= 0, got -1"):
        write_pseudo_masks([fold], 501, tmp_path / "out", export_dataset=502, export_name="P",
                           options=LabelOptions(ignore_ring=-1))
    assert not (tmp_path / "out").exists()


def test_export_ignores_the_least_confident_boxes_whole(src, nnunet_env, tmp_path):
    import pandas as pd

    fold = prediction_folder(tmp_path / "pred_f0", fold0())
    prov = write_pseudo_masks([fold], 501, tmp_path / "out", rule="fixed", refine="none", export_dataset=502,
                              export_name="Unsure", options=LabelOptions(ignore_unsure=0.6))
    ds = nnunet_env["nnUNet_raw"] / "Dataset502_Unsure"
    # mask confidence (mean P over each box's mask at P >= 0.5): frac B1 (0.8 x 3 + 0.7) / 4 = 0.775, B2 and B3
    # empty (0), two A 0.6 (four 0.6), B (0.6 + 0.6 + 0.9) / 3 = 0.7. floor(0.6 x 5) = 3 unsure: B2, B3 and A
    table = pd.read_csv(tmp_path / "out" / "pseudo_masks.csv")
    assert np.allclose(table["mask_confidence"].fillna(-1), [0.775, -1, -1, 0.6, 0.7])
    assert [(b["case"], b["box_id"]) for b in prov["unsure_boxes"]] == [("frac", 2), ("frac", 3), ("two", 1)]
    assert prov["ignore_unsure"] == 0.6
    expected_frac = mask_from(B1_HIGH)
    expected_frac[2:4, 2:5, 3:6] = 2  # B2
    expected_frac[3, 4, 0:3] = 2  # B3
    assert np.array_equal(read(ds / "labelsTr" / "frac.nii.gz"), expected_frac)
    # two: A (i 0-3) is ignore except i 2-3, which lie in B (confident): B's mask keeps i 2, 3 and 5 (0.2 at i 4)
    two = np.zeros(read(ds / "labelsTr" / "two.nii.gz").shape, np.uint8)
    two[0, 0, :] = (2, 2, 1, 1, 0, 1)
    assert np.array_equal(read(ds / "labelsTr" / "two.nii.gz"), two)
    assert json.loads((ds / "dataset.json").read_text(encoding="utf-8"))["labels"]["ignore"] == 2


def test_unsure_boxes_need_an_export(src, tmp_path):
    fold = prediction_folder(tmp_path / "pred_f0", fold0())
    with pytest.raises(ValueError, match="--ignore-unsure-boxes only shapes the exported labels"):
        write_pseudo_masks([fold], 501, tmp_path / "out", options=LabelOptions(ignore_unsure=0.4))
    with pytest.raises(ValueError, match=r"--ignore-unsure-boxes must be a share of the boxes in \[0, 1\), got 1"):
        write_pseudo_masks([fold], 501, tmp_path / "out", export_dataset=502, export_name="P",
                           options=LabelOptions(ignore_unsure=1))
    assert not (tmp_path / "out").exists()
