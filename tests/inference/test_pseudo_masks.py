"""``nnunet-fracture pseudo-masks`` end to end on tiny datasets with hand-computed masks.

Grid: SIZE (i, j, k) = (6, 5, 4) -> numpy [k, j, i] of shape (4, 5, 6), spacing (0.8, 0.8, 2.5), a permuted
direction and a non-zero origin. Cases (sorted: frac, normal, two):

- frac: B1 = i 0-2, j 0-2, k 0-1 -> numpy [0:2, 0:3, 0:3], 18 voxels, P 0.1 except [0, 0, 0:3] = 0.8 and
  [1, 0, 0] = 0.7 (bimodal); B2 = i 3-5, j 2-4, k 2-3 -> [2:4, 2:5, 3:6], 18 voxels, P 0.02 everywhere (a box the
  model missed); B3 = i 0-2, j 4, k 3 -> [3, 4, 0:3], P (0.1, 0.3, 0.35). Outside every box P = 0 except
  [3, 0, 0] = 0.95 and [2, 0, 0] = 0.6, which must never appear in a mask.
- normal: no box, P = 0.3 everywhere.
- two: overlapping boxes A = i 0-3 and B = i 2-5 on row j = 0, k = 0; P along i = (0.6, 0.6, 0.6, 0.6, 0.2, 0.9).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture import __version__
from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks

SIZE = (6, 5, 4)
SHAPE = SIZE[::-1]
ORIGIN, SPACING, DIRECTION = (1.0, 2.0, 3.0), (0.8, 0.8, 2.5), (0, 1, 0, -1, 0, 0, 0, 0, 1)
B1, B2, B3 = VoxelBox((0, 0, 0), (2, 2, 1), "L1"), VoxelBox((3, 2, 2), (5, 4, 3), "L2"), VoxelBox((0, 4, 3), (2, 4, 3))
BOX_A, BOX_B = VoxelBox((0, 0, 0), (3, 0, 0), "T12"), VoxelBox((2, 0, 0), (5, 0, 0), "L1")


def image(pixel=sitk.sitkInt16, value=-1000, origin=ORIGIN) -> sitk.Image:
    img = sitk.Image(list(SIZE), pixel) + value
    img.SetOrigin(origin)
    img.SetSpacing(SPACING)
    img.SetDirection(DIRECTION)
    return img


def on_grid(array: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.CopyInformation(image())
    return img


def source_dataset(raw: Path) -> Path:
    """Dataset501_Src with ground truth and vertebrae for 'frac' (copied by the export)."""
    gt = np.zeros(SHAPE, np.uint8)
    gt[0, 0, 0:3] = 1
    vert = np.full(SHAPE, 20, np.uint8)
    cases = [CaseRecord("frac", image(), [B1, B2, B3], on_grid(gt), on_grid(vert), "frac.nii.gz"),
             CaseRecord("normal", image(), []), CaseRecord("two", image(), [BOX_A, BOX_B])]
    return write_raw_dataset(cases, 501, "Src", raw_root=raw)


def fold0() -> dict[str, np.ndarray]:
    frac = np.zeros(SHAPE, np.float32)
    frac[0:2, 0:3, 0:3] = 0.1
    frac[0, 0, 0:3] = 0.8
    frac[1, 0, 0] = 0.7
    frac[2:4, 2:5, 3:6] = 0.02
    frac[3, 4, 0:3] = (0.1, 0.3, 0.35)
    frac[3, 0, 0], frac[2, 0, 0] = 0.95, 0.6
    two = np.zeros(SHAPE, np.float32)
    two[0, 0, :] = (0.6, 0.6, 0.6, 0.6, 0.2, 0.9)
    return {"frac": frac, "normal": np.full(SHAPE, 0.3, np.float32), "two": two}


def fold1() -> dict[str, np.ndarray]:
    """Fold 0 with two voxels of B1 changed: [0, 0, 0] 0.8 -> 0.4 and [1, 0, 0] 0.7 -> 0.1."""
    p = fold0()
    p["frac"][0, 0, 0], p["frac"][1, 0, 0] = 0.4, 0.1
    return p


def prediction_folder(folder: Path, probabilities: dict[str, np.ndarray], channels: int = 1,
                      model_files: bool = False, origin=ORIGIN) -> Path:
    """A fake nnUNetv2_predict output folder: <case>.nii.gz segmentation + <case>.npz probabilities."""
    folder.mkdir(parents=True)
    for case, p in probabilities.items():
        stack = p[None] if channels == 1 else np.stack([1 - p, p])
        np.savez_compressed(folder / f"{case}.npz", probabilities=stack.astype(np.float32))
        seg = on_grid((p >= 0.5).astype(np.uint8))
        seg.SetOrigin(origin)
        sitk.WriteImage(seg, str(folder / f"{case}.nii.gz"))
        (folder / f"{case}.pkl").write_bytes(b"")  # nnU-Net writes properties next to them; ignored
    if model_files:
        (folder / "predict_from_raw_data_args.json").write_text(json.dumps(
            {"list_of_lists_or_source_folder": "/data/Dataset501_Src/imagesTr", "output_folder_or_list_of_"
             "truncated_output_files": str(folder), "save_probabilities": True, "overwrite": True,
             "num_processes_preprocessing": 3, "num_processes_segmentation_export": 3,
             "folder_with_segs_from_prev_stage": None, "num_parts": 1, "part_id": 0}))
        (folder / "plans.json").write_text(json.dumps(
            {"dataset_name": "Dataset501_Src", "plans_name": "nnUNetPlansTiny",
             "configurations": {"3d_fullres": {}, "2d": {}}}))
        (folder / "dataset.json").write_text(json.dumps(
            {"labels": {"background": 0, "fracture": [1, 2, 3]}, "regions_class_order": [1],
             "file_ending": ".nii.gz", "nnunet_fracture": {"weak": "box"}}))
    return folder


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def mask_from(indices, value=1) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    for index in indices:
        mask[index] = value
    return mask


def rows(out: Path) -> dict[tuple[str, int], dict]:
    with open(out / "pseudo_masks.csv", newline="") as f:
        return {(r["case"], int(r["box_id"])): r for r in csv.DictReader(f)}


@pytest.fixture
def src(nnunet_env) -> Path:
    return source_dataset(nnunet_env["nnUNet_raw"])


B1_HIGH = [(0, 0, 0), (0, 0, 1), (0, 0, 2), (1, 0, 0)]
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
                              ignore_band=(0.25, 0.5))
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


def test_an_ignore_band_needs_an_export_and_an_order(src, tmp_path):
    fold = prediction_folder(tmp_path / "pred_f0", fold0())
    with pytest.raises(ValueError, match="--ignore-band only shapes the exported labels"):
        write_pseudo_masks([fold], 501, tmp_path / "out", ignore_band=(0.2, 0.5))
    with pytest.raises(ValueError, match="LOW < HIGH"):
        write_pseudo_masks([fold], 501, tmp_path / "out", export_dataset=502, export_name="P", ignore_band=(0.5, 0.2))
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
