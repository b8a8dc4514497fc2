"""``nnunet-fracture reorient``: permuted copies that keep every voxel's physical position, and nnU-Net's planning.

Grid of the source cases: SIZE (i, j, k) = (5, 4, 3) -> numpy [k, j, i] of shape (3, 4, 5), anisotropic spacing
(0.8, 0.7, 2.5) mm, an oblique direction (a rotation of 10, -7 and 25 degrees, still closest to the identity) and
a non-zero origin. Voxel values are ``100 k + 10 j + i``, so every permutation can be read off by hand: a coronal
copy (axis order (0, 2, 1)) has arrays ``[j, k, i]``, so its array element ``[3, 2, 4]`` holds 100 * 2 + 10 * 3 + 4.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.box_geometry import rasterise_boxes
from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
from nnunet_fracture.triplanar.reoriented_copies import (array_axes, inverse_axis_order, planning_command,
                                                         planning_target_spacing, reorient_box_entry, reorient_image,
                                                         slicing_axis_order, write_reoriented_dataset)

SIZE = (5, 4, 3)
SHAPE = SIZE[::-1]
SPACING = (0.8, 0.7, 2.5)
ORIGIN = (-10.25, 20.5, 5.75)
OBLIQUE = tuple(Rotation.from_euler("xyz", [10, -7, 25], degrees=True).as_matrix().ravel())
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
BOX1 = VoxelBox((0, 1, 0), (2, 3, 1), "L1", 2)
BOX2 = VoxelBox((3, 0, 2), (4, 1, 2), "L2")


def coded() -> np.ndarray:
    k, j, i = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    return (100 * k + 10 * j + i).astype(np.int16)


def image(array=None, direction=OBLIQUE, spacing=SPACING) -> sitk.Image:
    img = sitk.GetImageFromArray(coded() if array is None else array)
    img.SetSpacing(spacing)
    img.SetOrigin(ORIGIN)
    img.SetDirection(direction)
    return img


def on_grid(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.CopyInformation(reference)
    return img


def source_cases(direction=OBLIQUE, spacing=SPACING) -> list[CaseRecord]:
    ct = image(direction=direction, spacing=spacing)
    gt = np.zeros(SHAPE, np.uint8)
    gt[0, 2, 1] = gt[1, 3, 0] = 1
    vert = np.full(SHAPE, 20, np.uint8)
    vert[2] = 21
    return [CaseRecord("frac", ct, [BOX1, BOX2], on_grid(gt, ct), on_grid(vert, ct), "frac.nii.gz"),
            CaseRecord("normal", image(-coded(), direction, spacing), [], None, None, "normal.nii.gz")]


def read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


# --- the permutation itself -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plane, direction, expected", [
    ("coronal", IDENTITY, (0, 2, 1)),
    ("sagittal", IDENTITY, (1, 2, 0)),
    ("axial", IDENTITY, (0, 1, 2)),
    # columns: i along -y, j along +x, k along z
    ("coronal", (0, 1, 0, -1, 0, 0, 0, 0, 1), (1, 2, 0)),
    ("sagittal", (0, 1, 0, -1, 0, 0, 0, 0, 1), (0, 2, 1)),
    ("coronal", OBLIQUE, (0, 2, 1)),
])
def test_slicing_axis_order(plane, direction, expected):
    assert slicing_axis_order(direction, plane) == expected


def test_array_axes_and_inverse_by_hand():
    assert array_axes((0, 2, 1)) == (1, 0, 2)  # [k, j, i] -> [j, k, i]
    assert array_axes((1, 2, 0)) == (2, 0, 1)  # [k, j, i] -> [i, k, j]
    assert array_axes((0, 1, 2)) == (0, 1, 2)
    assert inverse_axis_order((1, 2, 0)) == (2, 0, 1)
    assert inverse_axis_order((0, 2, 1)) == (0, 2, 1)
    with pytest.raises(ValueError, match="permutation"):
        array_axes((0, 0, 1))


def test_coronal_image_by_hand():
    src = image(direction=IDENTITY)
    out = reorient_image(src, (0, 2, 1))
    array = sitk.GetArrayFromImage(out)
    assert out.GetSize() == (5, 3, 4)  # (i, k, j)
    assert out.GetSpacing() == (0.8, 2.5, 0.7)
    assert out.GetOrigin() == ORIGIN
    assert out.GetDirection() == (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)  # left-handed: det -1
    assert array.shape == (4, 3, 5)  # [j, k, i]: slices of constant j (y), rows k (z), columns i (x)
    # new array [j, k, i] holds source value 100 k + 10 j + i
    assert array[3, 2, 4] == 234 and array[1, 0, 2] == 12 and array[0, 1, 0] == 100
    assert np.array_equal(array, np.transpose(coded(), (1, 0, 2)))
    # the same voxel at the same physical point
    assert out.TransformIndexToPhysicalPoint((4, 2, 3)) == src.TransformIndexToPhysicalPoint((4, 3, 2))


def test_sagittal_image_by_hand():
    out = reorient_image(image(direction=IDENTITY), (1, 2, 0))
    array = sitk.GetArrayFromImage(out)
    assert out.GetSize() == (4, 3, 5)  # (j, k, i)
    assert array.shape == (5, 3, 4)  # [i, k, j]
    assert array[4, 2, 3] == 234 and array[2, 0, 1] == 12


def test_vector_image_keeps_components():
    vec = sitk.Compose(image(direction=IDENTITY), image(-coded(), IDENTITY))
    out = reorient_image(vec, (0, 2, 1))
    array = sitk.GetArrayFromImage(out)
    assert out.GetNumberOfComponentsPerPixel() == 2 and array.shape == (4, 3, 5, 2)
    assert array[3, 2, 4, 0] == 234 and array[3, 2, 4, 1] == -234


def test_box_entry():
    entry = {"box_id": 1, "lo": [0, 1, 0], "hi": [2, 3, 1], "world_min": [1.0, 2.0, 3.0], "world_max": [4.0, 5.0, 6.0],
             "label": "L1", "grade": 2}
    out = reorient_box_entry(entry, (0, 2, 1))
    assert out["lo"] == [0, 0, 1] and out["hi"] == [2, 1, 3]
    assert {k: v for k, v in out.items() if k not in ("lo", "hi")} == \
        {k: v for k, v in entry.items() if k not in ("lo", "hi")}


def test_planning_target_spacing_puts_the_first_axis_first():
    # a coronal copy of 0.8 x 0.8 x 2.5 mm CT: array spacing (0.8, 2.5, 0.8); one case slightly different
    spacings = [(0.8, 2.5, 0.8), (0.8000000119, 2.5, 0.8000000119), (0.7, 3.0, 0.7)]
    target = planning_target_spacing(spacings)
    assert target == [2.5, 2.5, 0.8]
    assert int(np.argmax(np.array(target))) == 0  # what nnU-Net's determine_transpose computes
    assert planning_command(602, target, "coronal") == (
        "nnUNetv2_plan_and_preprocess -d 602 -c 2d --verify_dataset_integrity -overwrite_target_spacing 2.5 2.5 0.8 "
        "-overwrite_plans_name nnUNetPlans_coronal")
    assert planning_target_spacing([(2.5, 0.8, 0.8)]) == [2.5, 0.8, 0.8]


# --- whole datasets ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("plane, order", [("coronal", (0, 2, 1)), ("sagittal", (1, 2, 0))])
def test_round_trip_is_bit_exact(nnunet_env, plane, order):
    src = write_raw_dataset(source_cases(), 501, "Src")
    out = write_reoriented_dataset(501, plane, 502)
    assert out == nnunet_env["nnUNet_raw"] / f"Dataset502_Src_{plane}"
    files = sorted(p.relative_to(src) for p in src.rglob("*.nii.gz"))
    assert files == sorted(p.relative_to(out) for p in out.rglob("*.nii.gz"))
    assert {f.parts[0] for f in files} == {"imagesTr", "labelsTr", "groundTruthTr", "vertebraeTr"}
    for rel in files:
        original, copy = read(src / rel), read(out / rel)
        assert copy.GetPixelID() == original.GetPixelID()
        assert np.array_equal(sitk.GetArrayFromImage(copy), np.transpose(sitk.GetArrayFromImage(original),
                                                                         array_axes(order))), rel
        back = sitk.Resample(copy, original, sitk.Transform(), sitk.sitkNearestNeighbor, -999, copy.GetPixelID())
        assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original)), rel
        # every voxel at the same physical point: compare the corner voxels
        for corner in [(0, 0, 0), tuple(s - 1 for s in original.GetSize())]:
            new_index = tuple(corner[a] for a in order)
            assert np.allclose(copy.TransformIndexToPhysicalPoint(new_index),
                               original.TransformIndexToPhysicalPoint(corner), atol=1e-5)


def test_boxes_and_metadata(nnunet_env):
    src = write_raw_dataset(source_cases(), 501, "Src")
    out = write_reoriented_dataset(src, "coronal", 502, name="Cor")
    assert out.name == "Dataset502_Cor"
    boxes, src_boxes = (json.loads((d / "boxes.json").read_text(encoding="utf-8")) for d in (out, src))
    assert boxes["normal"] == []
    (b1, b2), (s1, s2) = boxes["frac"], src_boxes["frac"]
    assert (b1["lo"], b1["hi"], b2["lo"], b2["hi"]) == ([0, 0, 1], [2, 1, 3], [3, 2, 0], [4, 2, 1])
    assert [(b["world_min"], b["world_max"]) for b in (b1, b2)] == [(s["world_min"], s["world_max"]) for s in (s1, s2)]
    # the permuted boxes rasterised on the copy's grid are the copy's box-number labels
    labels = read(out / "labelsTr" / "frac.nii.gz")
    boxes_as_voxels = [VoxelBox(tuple(b["lo"]), tuple(b["hi"])) for b in boxes["frac"]]
    assert np.array_equal(rasterise_boxes(boxes_as_voxels, labels.GetSize()), sitk.GetArrayFromImage(labels))
    meta, src_meta = (json.loads((d / "dataset.json").read_text(encoding="utf-8")) for d in (out, src))
    assert meta["name"] == "Dataset502_Cor"
    assert {k: v for k, v in meta.items() if k not in ("name", "nnunet_fracture")} == \
        {k: v for k, v in src_meta.items() if k not in ("name", "nnunet_fracture")}
    info = meta["nnunet_fracture"]["reorientation"]
    assert info["reoriented_from"] == "Dataset501_Src" and info["plane"] == "coronal"
    assert info["axis_order"] == [0, 2, 1]
    assert info["case_axis_order"] == {"frac": [0, 2, 1], "normal": [0, 2, 1]}
    assert info["overwrite_target_spacing"] == [2.5, 2.5, 0.8]  # array spacing (0.7, 2.5, 0.8)
    assert "-overwrite_target_spacing 2.5 2.5 0.8" in info["nnunet_2d_planning"]
    assert meta["nnunet_fracture"]["weak"] == "box"  # the source's block is kept


@pytest.mark.parametrize("plane", ["coronal", "sagittal"])
def test_nnunet_integrity_check_accepts_copies(nnunet_env, plane):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    write_raw_dataset(source_cases(), 501, "Src")
    verify_dataset_integrity(str(write_reoriented_dataset(501, plane, 502)), num_processes=1)


def test_per_case_axis_order_follows_each_direction(nnunet_env):
    turned = (0, 1, 0, -1, 0, 0, 0, 0, 1)
    cases = source_cases()[:1] + [CaseRecord("turned", image(direction=turned), [])]
    write_raw_dataset(cases, 501, "Src")
    out = write_reoriented_dataset(501, "coronal", 502)
    info = json.loads((out / "dataset.json").read_text(encoding="utf-8"))["nnunet_fracture"]["reorientation"]
    assert info["axis_order"] is None
    assert info["case_axis_order"] == {"frac": [0, 2, 1], "turned": [1, 2, 0]}
    turned_copy = read(out / "imagesTr" / "turned_0000.nii.gz")
    assert turned_copy.GetSize() == (4, 3, 5)


def test_errors_write_nothing(nnunet_env, tmp_path):
    raw = nnunet_env["nnUNet_raw"]
    write_raw_dataset(source_cases(), 501, "Src")
    with pytest.raises(ValueError, match="source dataset's own ID"):
        write_reoriented_dataset(501, "coronal", 501)
    with pytest.raises(ValueError, match="unknown plane"):
        write_reoriented_dataset(501, "oblique", 502)
    with pytest.raises(ValueError, match="dataset name"):
        write_reoriented_dataset(501, "coronal", 502, name="bad name")
    with pytest.raises(FileNotFoundError, match="no dataset with ID 777"):
        write_reoriented_dataset(777, "coronal", 502)
    (tmp_path / "empty" / "imagesTr").mkdir(parents=True)
    (tmp_path / "empty" / "dataset.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="holds no <case>_0000.nii.gz"):
        write_reoriented_dataset(tmp_path / "empty", "coronal", 502)
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset501_Src"]

    first = write_reoriented_dataset(501, "coronal", 502)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_reoriented_dataset(501, "sagittal", 502)
    again = write_reoriented_dataset(501, "sagittal", 502, overwrite=True)
    assert not first.exists() and again.name == "Dataset502_Src_sagittal"
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset501_Src", "Dataset502_Src_sagittal"]


def test_cli(nnunet_env, capsys):
    write_raw_dataset(source_cases(), 501, "Src")
    assert main(["reorient", "501", "--plane", "sagittal", "--dataset-id", "503"]) == 0
    printed = capsys.readouterr().out
    assert "Dataset503_Src_sagittal" in printed and "axis order [1, 2, 0]" in printed
    assert "nnUNetv2_plan_and_preprocess -d 503 -c 2d" in printed and "-p nnUNetPlans_sagittal" in printed
    assert main(["reorient", "501", "--plane", "sagittal", "--dataset-id", "503"]) == 1
    assert "already used" in capsys.readouterr().err


def test_convert_help_mentions_reorient(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    assert "nnunet-fracture reorient" in capsys.readouterr().out


# --- what nnU-Net's planner does with the copies -------------------------------------------------------------------

@pytest.mark.slow
def test_nnunet_planning_slices_the_copy_coronally_only_with_the_override(nnunet_env, tmp_path):
    """Thick-slice CT (0.8 x 0.8 x 2.5 mm): nnU-Net's default transpose undoes the coronal permutation; the planning
    command stored in dataset.json keeps it, with the coronal plane's native 2d spacing."""
    from nnunet_tiny_dataset import quiet_env

    from nnunet_fracture.stock_commands import run_stock

    size, spacing = (20, 16, 6), (0.8, 0.8, 2.5)
    rng = np.random.default_rng(0)
    cases = []
    for n in range(2):
        ct = sitk.GetImageFromArray(rng.normal(0, 100, size[::-1]).astype(np.int16))
        ct.SetSpacing(spacing)
        cases.append(CaseRecord(f"c{n}", ct, [VoxelBox((4, 4, 1), (9, 8, 3))]))
    write_raw_dataset(cases, 501, "Thick")
    out = write_reoriented_dataset(501, "coronal", 502)
    info = json.loads((out / "dataset.json").read_text(encoding="utf-8"))["nnunet_fracture"]["reorientation"]
    assert info["overwrite_target_spacing"] == [2.5, 2.5, 0.8]  # array spacing (0.8, 2.5, 0.8)

    env = quiet_env(**nnunet_env)
    env["nnUNet_n_proc_DA"] = "1"  # the planner needs >= 1
    log = tmp_path / "nnunet.log"
    run_stock(["nnUNetv2_extract_fingerprint", "-d", "502", "-np", "1"], log, env)
    run_stock(["nnUNetv2_plan_experiment", "-d", "502"], log, env)
    run_stock(info["nnunet_2d_planning"].split() + ["-np", "1", "-npfp", "1"], log, env)
    folder = nnunet_env["nnUNet_preprocessed"] / out.name
    default = json.loads((folder / "nnUNetPlans.json").read_text(encoding="utf-8"))
    assert default["transpose_forward"] == [1, 0, 2]  # the 2.5 mm axis first again: axial 2D slices
    assert default["configurations"]["2d"]["spacing"] == pytest.approx([0.8, 0.8])
    plans = json.loads((folder / "nnUNetPlans_coronal.json").read_text(encoding="utf-8"))
    assert plans["transpose_forward"] == [0, 1, 2]  # slices along array axis 0 = y: coronal
    assert plans["configurations"]["2d"]["spacing"] == pytest.approx([2.5, 0.8])  # (z, x) in-plane
    assert (folder / "nnUNetPlans_coronal_2d").is_dir()


def test_a_link_out_of_the_source_dataset_is_refused(nnunet_env, tmp_path):
    """reorient used to follow a symbolic link out of the source dataset and copy its target into the new one."""
    src = write_raw_dataset(source_cases(), 501, "Src")
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the dataset")
    (src / "notes.txt").symlink_to(secret)
    with pytest.raises(ValueError, match=r"notes.txt is a link to .*secret.txt, outside the source dataset"):
        write_reoriented_dataset(501, "coronal", 502)
    (src / "notes.txt").unlink()
    (src / "extra").symlink_to(tmp_path, target_is_directory=True)  # a linked folder
    with pytest.raises(ValueError, match="outside the source dataset"):
        write_reoriented_dataset(501, "coronal", 502)
    (src / "extra").unlink()
    (src / "imagesTr" / "README").symlink_to(src / "dataset.json")  # a link inside the dataset is fine
    assert (write_reoriented_dataset(501, "coronal", 502) / "imagesTr" / "README").is_file()
    assert sorted(p.name for p in nnunet_env["nnUNet_raw"].iterdir()) == ["Dataset501_Src", "Dataset502_Src_coronal"]
