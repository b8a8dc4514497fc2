"""``nnunet-fracture pseudo-masks`` end to end on tiny datasets with hand-computed masks (the cases:
``pseudo_mask_cases``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture import __version__
from nnunet_fracture.cli import main
from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks

from pseudo_mask_cases import (B1_HIGH, DIRECTION, ORIGIN, SHAPE, SIZE, SPACING, fold0, fold1, image, mask_from,
                               prediction_folder, read, rows)

EXPECTED = {  # rule -> (frac mask voxels, two mask voxels along i on row [0, 0, :])
    "fixed": (B1_HIGH, [0, 1, 2, 3, 5]),
    "otsu": (B1_HIGH + [(3, 4, 1), (3, 4, 2)], [0, 1, 2, 3, 5]),
    # B1: ceil(0.3 * 18) = 6 -> the four high voxels, then the first two 0.1 voxels in array order; B2 is below the
    # floor; B3: ceil(0.3 * 3) = 1 -> 0.35. A: ceil(0.3 * 4) = 2 of four 0.6 ties -> i 0, 1; B: 0.9 (i 5), then
    # the first 0.6 (i 2).
    "fraction": (B1_HIGH + [(0, 1, 0), (0, 1, 1), (3, 4, 2)], [0, 1, 2, 5]),
}
KEPT = {  # rule -> voxels kept per box: (frac B1, B2, B3, two A, two B)
    "fixed": (4, 0, 0, 4, 3), "otsu": (4, 0, 2, 4, 3), "fraction": (6, 0, 1, 2, 2),
}



@pytest.mark.parametrize("rule", ["fixed", "otsu", "fraction"])
def test_rules_give_hand_computed_masks(src, tmp_path, rule):
    pred = prediction_folder(tmp_path / "pred", fold0())
    out = tmp_path / "out"
    write_pseudo_masks([pred], src, out, rule=rule)
    frac_voxels, two_is = EXPECTED[rule]
    assert np.array_equal(read(out / "masks" / "frac.nii.gz"), mask_from(frac_voxels))
    assert np.array_equal(read(out / "masks" / "two.nii.gz"), mask_from([(0, 0, i) for i in two_is]))
    assert read(out / "masks" / "normal.nii.gz").sum() == 0  # P = 0.3 everywhere, but no box
    table = rows(out)
    keys = [("frac", 1), ("frac", 2), ("frac", 3), ("two", 1), ("two", 2)]
    assert [int(table[k]["voxels_kept"]) for k in keys] == list(KEPT[rule])
    assert [int(table[k]["voxels_in_box"]) for k in keys] == [18, 18, 3, 4, 4]
    assert table[("frac", 2)]["empty"] == "True" and table[("frac", 1)]["empty"] == "False"
    assert all(r["rule"] == rule for r in table.values()) and len(table) == 5


def test_thresholds_in_table(src, tmp_path):
    pred = prediction_folder(tmp_path / "pred", fold0())
    write_pseudo_masks([pred], src, tmp_path / "otsu", rule="otsu")
    table = rows(tmp_path / "otsu")
    assert 0.1 < float(table[("frac", 1)]["threshold"]) < 0.7 and table[("frac", 1)]["comparison"] == ">"
    assert 0.1 < float(table[("frac", 3)]["threshold"]) < 0.3
    assert float(table[("frac", 2)]["threshold"]) == 0.5 and table[("frac", 2)]["comparison"] == ">="  # constant
    assert float(table[("two", 1)]["threshold"]) == 0.5  # constant 0.6: kept whole
    write_pseudo_masks([pred], src, tmp_path / "fraction", rule="fraction")
    table = rows(tmp_path / "fraction")
    assert float(table[("frac", 1)]["threshold"]) == pytest.approx(0.1)
    assert table[("frac", 2)]["threshold"] == "" and table[("frac", 2)]["comparison"] == "rank"  # NaN: none kept
    write_pseudo_masks([pred], src, tmp_path / "fixed", rule="fixed", threshold=0.3)
    table = rows(tmp_path / "fixed")
    assert float(table[("frac", 1)]["threshold"]) == 0.3 and int(table[("frac", 3)]["voxels_kept"]) == 2


def test_outputs_have_the_image_geometry_and_types(src, tmp_path):
    pred = prediction_folder(tmp_path / "pred", fold0())
    out = tmp_path / "out"
    write_pseudo_masks([pred], src, out)
    assert sorted(p.name for p in out.iterdir()) == ["masks", "probabilities", "pseudo_masks.csv",
                                                     "pseudo_masks.json", "uncertainty"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    for sub, pixel in (("masks", sitk.sitkUInt8), ("probabilities", sitk.sitkFloat32),
                       ("uncertainty", sitk.sitkFloat32)):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["frac.nii.gz", "normal.nii.gz", "two.nii.gz"]
        img = sitk.ReadImage(str(out / sub / "frac.nii.gz"))
        assert img.GetPixelID() == pixel and img.GetSize() == SIZE
        assert np.allclose(img.GetOrigin(), ORIGIN) and np.allclose(img.GetSpacing(), SPACING)
        assert np.allclose(img.GetDirection(), DIRECTION)
    mask = read(out / "masks" / "frac.nii.gz")
    assert set(np.unique(mask)) == {0, 1} and mask[3, 0, 0] == 0 and mask[2, 0, 0] == 0  # P 0.95 / 0.6 outside
    assert np.allclose(read(out / "probabilities" / "frac.nii.gz"), fold0()["frac"])


def test_two_folds_mean_and_std(src, tmp_path):
    folds = [prediction_folder(tmp_path / "pred_f0", fold0()), prediction_folder(tmp_path / "pred_f1", fold1())]
    out = tmp_path / "out"
    prov = write_pseudo_masks(folds, src, out, rule="fixed")
    p, u = read(out / "probabilities" / "frac.nii.gz"), read(out / "uncertainty" / "frac.nii.gz")
    expected_p = fold0()["frac"]
    expected_p[0, 0, 0], expected_p[1, 0, 0] = 0.6, 0.4  # (0.8 + 0.4) / 2, (0.7 + 0.1) / 2
    expected_u = np.zeros(SHAPE)
    expected_u[0, 0, 0], expected_u[1, 0, 0] = 0.2, 0.3  # |0.8 - 0.4| / 2, |0.7 - 0.1| / 2
    assert np.allclose(p, expected_p, atol=1e-6) and np.allclose(u, expected_u, atol=1e-6)
    assert np.allclose(read(out / "uncertainty" / "two.nii.gz"), 0.0)
    # [1, 0, 0] drops to 0.4 < 0.5
    assert np.array_equal(read(out / "masks" / "frac.nii.gz"), mask_from(B1_HIGH[:3]))
    assert prov["uncertainty"]["kind"] == "fold_std" and prov["fusion"].startswith("mean")
    assert prov["prediction_folders"] == [str(f) for f in folds]
    table = rows(out)
    assert float(table[("frac", 1)]["mean_uncertainty"]) == pytest.approx(0.5 / 18, abs=1e-6)
    assert float(table[("frac", 1)]["max_probability"]) == pytest.approx(0.8)


def test_one_fold_binary_entropy(src, tmp_path):
    pred = prediction_folder(tmp_path / "pred", fold0())
    prov = write_pseudo_masks([pred], src, tmp_path / "out")
    u = read(tmp_path / "out" / "uncertainty" / "frac.nii.gz")
    assert u[0, 0, 0] == pytest.approx(0.7219280948873623, abs=1e-6)  # H(0.8)
    assert u[0, 1, 1] == pytest.approx(0.4689955935892812, abs=1e-6)  # H(0.1)
    assert u[2, 0, 0] == pytest.approx(0.9709505944546686, abs=1e-6)  # H(0.6)
    assert u[1, 4, 5] == 0.0  # H(0)
    assert np.allclose(read(tmp_path / "out" / "uncertainty" / "normal.nii.gz"), 0.8812908992306927)  # H(0.3)
    assert prov["uncertainty"]["kind"] == "binary_entropy_bits" and prov["fusion"] == "single folder"


def test_two_channel_softmax_probabilities(src, tmp_path):
    one = prediction_folder(tmp_path / "region", fold0())
    two = prediction_folder(tmp_path / "softmax", fold0(), channels=2)
    write_pseudo_masks([one], src, tmp_path / "a", rule="otsu")
    write_pseudo_masks([two], src, tmp_path / "b", rule="otsu")
    for case in ("frac", "two"):
        assert np.array_equal(read(tmp_path / "a" / "masks" / f"{case}.nii.gz"),
                              read(tmp_path / "b" / "masks" / f"{case}.nii.gz"))
    assert np.allclose(read(tmp_path / "b" / "probabilities" / "frac.nii.gz"), fold0()["frac"], atol=1e-6)


def test_provenance(src, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prediction_folder(tmp_path / "pred_f0", fold0(), model_files=True)
    prediction_folder(tmp_path / "pred_f1", fold1())
    prov = write_pseudo_masks(["pred_f0", "pred_f1"], src, "out", rule="fraction", fraction=0.3)
    assert json.loads((tmp_path / "out" / "pseudo_masks.json").read_text(encoding="utf-8")) == prov
    assert prov["plugin_version"] == __version__ and prov["created"].endswith("+00:00")
    assert prov["prediction_folders"] == [str(tmp_path / "pred_f0"), str(tmp_path / "pred_f1")]  # absolute
    assert prov["source_dataset"] == str(src) and prov["rule"] == "fraction"
    assert prov["parameters"] == {"fraction": 0.3, "min_threshold": 0.05}
    assert prov["num_cases"] == 3 and prov["num_boxes"] == 5 and prov["num_empty_boxes"] == 1
    assert prov["empty_boxes"] == [{"case": "frac", "box_id": 2}]
    assert prov["thresholds"]["num_boxes"] == 5 and prov["thresholds"]["max"] == pytest.approx(0.6)
    assert "union" in prov["box_regions"] and prov["export_dataset"] is None
    model, bare = prov["models"]
    assert model["plans_name"] == "nnUNetPlansTiny" and model["model_dataset_name"] == "Dataset501_Src"
    assert model["configurations_in_plans"] == ["2d", "3d_fullres"] and model["save_probabilities"] is True
    assert model["input"] == "/data/Dataset501_Src/imagesTr" and model["model_weak_labels"] == "box"
    assert model["files_found"] == ["predict_from_raw_data_args.json", "plans.json", "dataset.json"]
    assert "trainer" in model["not_recorded"] and model["num_cases"] == 3
    assert bare["files_found"] == [] and "plans_name" not in bare


def test_dataset_by_id_name_or_folder(src, tmp_path):
    pred = prediction_folder(tmp_path / "pred", fold0())
    for i, dataset in enumerate((501, "501", "Dataset501_Src", str(src))):
        prov = write_pseudo_masks([pred], dataset, tmp_path / f"out{i}")
        assert prov["source_dataset"] == str(src)


def no_outputs(tmp_path: Path, raw: Path) -> bool:
    leftovers = [p.name for p in tmp_path.iterdir() if p.name == "out" or p.name.startswith(".")]
    return not leftovers and sorted(p.name for p in raw.iterdir()) == ["Dataset501_Src"]


def drop(folder: Path, name: str) -> None:
    (folder / name).unlink()


BAD = {
    "case missing in a fold": (lambda d: drop(d[1], "two.npz"), FileNotFoundError,
                               r"pred_f1 has no probabilities.*two.*Fix"),
    "segmentation missing": (lambda d: drop(d[0], "normal.nii.gz"), FileNotFoundError,
                             r"pred_f0 has no segmentation.*normal"),
    "case of another dataset": (lambda d: np.savez(d[0] / "other.npz", probabilities=np.zeros((1, *SHAPE))),
                                ValueError, r"pred_f0.*other.*another dataset"),
    "probability out of range": (lambda d: np.savez(d[1] / "two.npz", probabilities=np.full((1, *SHAPE), 1.5)),
                                 ValueError, r"case two.*outside \[0, 1\]"),
    "wrong shape": (lambda d: np.savez(d[1] / "two.npz", probabilities=np.zeros((1, 4, 5, 5))),
                    ValueError, r"case two.*shape"),
    "geometry": (lambda d: sitk.WriteImage(image(sitk.sitkUInt8, 0, origin=(9.0, 2.0, 3.0)), str(d[1] / "two.nii.gz")),
                 ValueError, r"case two.*origin.*Fix"),
}


@pytest.mark.parametrize("key", sorted(BAD))
def test_bad_predictions_leave_nothing(src, nnunet_env, tmp_path, key):
    spoil, error, match = BAD[key]
    folders = [prediction_folder(tmp_path / "pred_f0", fold0()), prediction_folder(tmp_path / "pred_f1", fold1())]
    spoil(folders)
    with pytest.raises(error, match=match):
        write_pseudo_masks(folders, src, tmp_path / "out", export_dataset=502, export_name="Pseudo")
    assert no_outputs(tmp_path, nnunet_env["nnUNet_raw"])


def test_bad_arguments(src, nnunet_env, tmp_path):
    pred = prediction_folder(tmp_path / "pred", fold0())
    out = tmp_path / "out"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "dataset.json").write_text("{}")
    cases = [
        (dict(dataset=tmp_path / "plain"), FileNotFoundError, "boxes.json does not exist.*nnunet-fracture convert"),
        (dict(dataset=777), FileNotFoundError, "no dataset with ID 777"),
        (dict(predictions=[pred, tmp_path / "pred"]), ValueError, "listed twice"),
        (dict(predictions=[tmp_path / "nope"]), FileNotFoundError, "nope does not exist"),
        (dict(predictions=[tmp_path / "plain"]), FileNotFoundError, "no probability files.*--save_probabilities"),
        (dict(export_dataset=501, export_name="Again"), ValueError, "ID of the source dataset"),
        (dict(export_dataset=502), ValueError, "go together"),
        (dict(export_dataset=502, export_name="a b"), ValueError, "name 'a b'"),
        (dict(rule="fraction", fraction=2.0), ValueError, "--fraction"),
        (dict(out=pred.parent, overwrite=True), ValueError, "destroy the input"),
    ]
    for kwargs, error, match in cases:
        args = dict(predictions=[pred], dataset=src, out=out) | kwargs
        with pytest.raises(error, match=match):
            write_pseudo_masks(args.pop("predictions"), args.pop("dataset"), args.pop("out"), **args)
        assert not out.exists() and sorted(p.name for p in nnunet_env["nnUNet_raw"].iterdir()) == ["Dataset501_Src"]


def test_existing_out_needs_overwrite(src, tmp_path):
    pred = prediction_folder(tmp_path / "pred", fold0())
    out = tmp_path / "out"
    out.mkdir()
    write_pseudo_masks([pred], src, out)  # an empty folder may be used
    with pytest.raises(FileExistsError, match="not empty.*--overwrite"):
        write_pseudo_masks([pred], src, out, rule="fraction")
    assert json.loads((out / "pseudo_masks.json").read_text(encoding="utf-8"))["rule"] == "fixed"
    # a failing overwrite keeps the old output
    np.savez(pred / "two.npz", probabilities=np.full((1, *SHAPE), -1.0))
    with pytest.raises(ValueError, match="case two"):
        write_pseudo_masks([pred], src, out, rule="fraction", overwrite=True)
    assert json.loads((out / "pseudo_masks.json").read_text(encoding="utf-8"))["rule"] == "fixed"
    np.savez(pred / "two.npz", probabilities=fold0()["two"][None])
    write_pseudo_masks([pred], src, out, rule="fraction", overwrite=True)
    assert json.loads((out / "pseudo_masks.json").read_text(encoding="utf-8"))["rule"] == "fraction"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refinement_is_recorded_per_box(src, tmp_path):
    fold = prediction_folder(tmp_path / "pred_f0", fold0())
    prov = write_pseudo_masks([fold], 501, tmp_path / "out", rule="fixed", refine="random_walker")
    table = rows(tmp_path / "out")
    # B1 has voxels >= 0.8 to grow from, but the tiny CT is uniform (-1000 HU): nothing to follow, the rule's mask
    # stays; B2 and B3 and the 'two' boxes have no confident voxel except B (0.9)
    assert table[("frac", 1)]["refinement"] == "no_contrast" and table[("frac", 2)]["refinement"] == "no_seed"
    assert table[("two", 2)]["refinement"] == "no_contrast"
    assert prov["refinement"]["method"] == "random_walker"
    assert prov["refinement_outcomes"] == {"no_contrast": 2, "no_seed": 3}
    assert np.array_equal(read(tmp_path / "out" / "masks" / "frac.nii.gz"), mask_from(B1_HIGH))


def test_cli(src, nnunet_env, tmp_path, capsys):
    pred = prediction_folder(tmp_path / "pred", fold0())
    out = tmp_path / "out"
    assert main(["pseudo-masks", str(pred), "--dataset", "501", "--out", str(out), "--rule", "fraction",
                 "--fraction", "0.3", "--export-dataset", "503", "--name", "Cli"]) == 0
    printed = capsys.readouterr().out
    assert "3 cases" in printed and "1 empty" in printed and "Dataset503_Cli" in printed
    assert np.array_equal(read(out / "masks" / "frac.nii.gz"), mask_from(EXPECTED["fraction"][0]))

    assert main(["pseudo-masks", str(pred), "--dataset", "501", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "pseudo-masks: error" in err and "--overwrite" in err
    assert main(["pseudo-masks", str(pred), "--dataset", "501", "--out", str(tmp_path / "o2"), "--threshold",
                 "0"]) == 1
    assert "--threshold must be a number in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pseudo-masks", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for words in ("usage: nnunet-fracture pseudo-masks", "--save_probabilities", "one per fold", "masks/<case>.nii.gz",
                  "uncertainty", "fixed", "otsu", "fraction", "--export-dataset"):
        assert words in text


def test_a_predicted_subset_of_the_dataset_is_processed(src, tmp_path):
    subset = {k: v for k, v in fold0().items() if k == "frac"}
    prov = write_pseudo_masks([prediction_folder(tmp_path / "pred", subset)], src, tmp_path / "out")
    assert prov["num_cases"] == 1
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["frac.nii.gz"]
