"""``nnunet-fracture fuse``: tri-planar product/mean fusion, class-head fusion, exact mapping back from reoriented
copies, outputs readable by the other commands, and clear errors.

Source grid: SIZE (i, j, k) = (5, 4, 3) -> numpy (3, 4, 5), anisotropic spacing (0.8, 0.7, 2.5) mm, an oblique
direction and a non-zero origin (the same as tests/triplanar/test_reoriented_copies.py). Each plane's model
"predicts" a probability array defined on the source grid; the coronal and sagittal ones are written on the grids of
the reoriented copies (their arrays permuted), as nnUNetv2_predict on those copies would, so the fused result can be
computed by hand on the source grid.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
from nnunet_fracture.triplanar.reoriented_copies import array_axes, reorient_image, write_reoriented_dataset
from nnunet_fracture.triplanar.class_head_fusion import class_head_fusion
from nnunet_fracture.triplanar.plane_fusion import fuse_arrays, fuse_predictions
from nnunet_fracture.inference.prediction_folders import PredictionFolder
from nnunet_fracture.io.probability_files import load_fracture_probability
from nnunet_fracture.triplanar.grid_mapping import GridMappingError, index_mapping, map_to_grid

SIZE = (5, 4, 3)
SHAPE = SIZE[::-1]
SPACING = (0.8, 0.7, 2.5)
ORIGIN = (-10.25, 20.5, 5.75)
OBLIQUE = tuple(Rotation.from_euler("xyz", [10, -7, 25], degrees=True).as_matrix().ravel())
CASES = ("a", "b")


def grid(size=SIZE, spacing=SPACING, origin=ORIGIN, direction=OBLIQUE, array=None) -> sitk.Image:
    img = sitk.GetImageFromArray(np.zeros(size[::-1], np.float32) if array is None else array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


# --- the arithmetic -----------------------------------------------------------------------------------------------

def test_product_and_mean_by_hand():
    ax, co, sa = np.array([0.5, 0.2, 1.0, 0.0]), np.array([0.8, 1.0, 0.5, 0.9]), np.array([0.25, 0.5, 0.5, 1.0])
    assert np.allclose(fuse_arrays([ax, co, sa], "product"), [0.1, 0.1, 0.25, 0.0], atol=1e-7)
    assert np.allclose(fuse_arrays([ax, co, sa], "mean"), [1.55 / 3, 1.7 / 3, 2.0 / 3, 1.9 / 3], atol=1e-7)
    assert np.allclose(fuse_arrays([ax, co], "mean"), [0.65, 0.6, 0.75, 0.45], atol=1e-7)
    assert fuse_arrays(iter([ax]), "product").dtype == np.float32
    with pytest.raises(ValueError, match="unknown fusion method"):
        fuse_arrays([ax], "max")
    with pytest.raises(ValueError, match="shape"):
        fuse_arrays([ax, ax[:2]], "product")
    with pytest.raises(ValueError, match="no probability"):
        fuse_arrays([], "mean")


def test_class_head_fusion_is_the_elementwise_product():
    seg = np.array([[0.5, 0.2], [1.0, 0.0]])
    cls = np.array([[0.4, 1.0], [0.25, 0.7]])
    assert np.allclose(class_head_fusion(seg, cls), [[0.2, 0.2], [0.25, 0.0]], atol=1e-7)
    assert np.allclose(class_head_fusion(seg, 0.5), [[0.25, 0.1], [0.5, 0.0]], atol=1e-7)
    with pytest.raises(ValueError, match="shape"):
        class_head_fusion(seg, cls[:1])


# --- mapping between grids ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", [(0, 2, 1), (1, 2, 0), (2, 0, 1), (0, 1, 2)])
def test_probability_round_trip_is_exact(order, tmp_path):
    rng = np.random.default_rng(1)
    probability = rng.random(SHAPE, dtype=np.float32)
    source = grid(array=probability)
    copy = reorient_image(source, order)
    # through NIfTI, as nnU-Net writes and reads the copies (header rounding)
    sitk.WriteImage(copy, str(tmp_path / "copy.nii.gz"))
    copy = sitk.ReadImage(str(tmp_path / "copy.nii.gz"))
    back, how = map_to_grid(sitk.GetArrayFromImage(copy), copy, source)
    assert np.array_equal(back, probability)
    assert "resampled" not in how and (how == "identical grids") == (order == (0, 1, 2))
    there, _ = map_to_grid(probability, source, copy)
    assert np.array_equal(there, np.transpose(probability, array_axes(order)))


def test_flips_and_crops_by_hand():
    source = grid(size=(4, 1, 1), spacing=(1, 1, 1), origin=(0, 0, 0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
                  array=np.array([[[0.0, 0.1, 0.2, 0.3]]], np.float32))
    # the same points, i running right to left: x = 3 - i
    flipped = grid(size=(4, 1, 1), spacing=(1, 1, 1), origin=(3, 0, 0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    values, _ = map_to_grid(sitk.GetArrayFromImage(source), source, flipped)
    assert values.ravel().tolist() == pytest.approx([0.3, 0.2, 0.1, 0.0])
    mapping = index_mapping(source, flipped)
    assert mapping.flip == (True, False, False) and mapping.start == (3, 0, 0)
    # a crop: x = 1 .. 2
    crop = grid(size=(2, 1, 1), spacing=(1, 1, 1), origin=(1, 0, 0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    values, how = map_to_grid(sitk.GetArrayFromImage(source), source, crop)
    assert values.ravel().tolist() == pytest.approx([0.1, 0.2]) and "starting at source index (1, 0, 0)" in how
    # flipped crop
    flipped_crop = grid(size=(2, 1, 1), spacing=(1, 1, 1), origin=(1, 0, 0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    values, _ = map_to_grid(sitk.GetArrayFromImage(source), source, flipped_crop)
    assert values.ravel().tolist() == pytest.approx([0.1, 0.0])


def test_unmappable_grids_are_refused_unless_resampling():
    source = grid(size=(4, 1, 1), spacing=(1, 1, 1), origin=(0, 0, 0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
                  array=np.array([[[0.0, 0.2, 0.4, 0.6]]], np.float32))
    half_shifted = grid(size=(3, 1, 1), spacing=(1, 1, 1), origin=(0.5, 0, 0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert index_mapping(source, half_shifted) is None
    with pytest.raises(GridMappingError, match="not an axis permutation"):
        map_to_grid(sitk.GetArrayFromImage(source), source, half_shifted)
    values, how = map_to_grid(sitk.GetArrayFromImage(source), source, half_shifted, resample="linear")
    assert values.ravel().tolist() == pytest.approx([0.1, 0.3, 0.5]) and how.startswith("resampled")
    beyond = grid(size=(3, 1, 1), spacing=(1, 1, 1), origin=(2, 0, 0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert index_mapping(source, beyond) is None  # x = 4 is not covered
    with pytest.raises(GridMappingError, match="1 of 3 target voxels lie outside"):
        map_to_grid(sitk.GetArrayFromImage(source), source, beyond, resample="linear")
    with pytest.raises(GridMappingError, match="shape"):
        map_to_grid(np.zeros((1, 1, 3)), source, source)


# --- whole prediction folders ----------------------------------------------------------------------------------------

def probabilities(plane: str, case: str) -> np.ndarray:
    """The plane model's fracture probability of ``case`` on the source grid: distinct, hand-checkable values."""
    k, j, i = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    base = {"axial": 0.9, "coronal": 0.8, "sagittal": 0.7}[plane] - (0.1 if case == "b" else 0.0)
    p = np.full(SHAPE, 0.1, np.float32)
    p[1, 1:3, 1:4] = base  # a fracture all three models see
    p[0, 0, 0] = {"axial": 0.95, "coronal": 0.05, "sagittal": 0.5}[plane]  # an axial false positive
    p[2, 3, 4] = (k + j + i)[2, 3, 4] / 10.0  # 0.9
    return p


@pytest.fixture
def datasets(nnunet_env):
    """Dataset501_Src (2 cases) with coronal (502) and sagittal (503) copies."""
    cases = []
    for case in CASES:
        ct = grid(array=np.full(SHAPE, 300, np.int16))
        cases.append(CaseRecord(case, ct, [VoxelBox((1, 1, 1), (3, 2, 1))]))
    src = write_raw_dataset(cases, 501, "Src")
    return {"axial": src, "coronal": write_reoriented_dataset(501, "coronal", 502),
            "sagittal": write_reoriented_dataset(501, "sagittal", 503)}


def write_prediction(folder: Path, dataset: Path, plane: str, values=None, channels: int = 1, plans=None) -> Path:
    """What nnUNetv2_predict --save_probabilities writes for the cases of ``dataset``: the .npz without geometry and
    the segmentation with the image's geometry; ``values(case)`` gives the probability on the SOURCE grid."""
    folder.mkdir(parents=True)
    info = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))["nnunet_fracture"].get("reorientation")
    for case in CASES:
        image = sitk.ReadImage(str(dataset / "imagesTr" / f"{case}_0000.nii.gz"))
        p = (values or (lambda c: probabilities(plane, c)))(case)
        if info is not None:
            p = np.transpose(p, array_axes(info["case_axis_order"][case]))
        assert p.shape == sitk.GetArrayFromImage(image).shape
        stacked = p[None] if channels == 1 else np.stack([1 - p, p])
        np.savez_compressed(folder / f"{case}.npz", probabilities=stacked)
        seg = sitk.GetImageFromArray((p > 0.5).astype(np.uint8))
        seg.CopyInformation(image)
        sitk.WriteImage(seg, str(folder / f"{case}.nii.gz"))
    if plans is not None:
        (folder / "plans.json").write_text(json.dumps({"transpose_forward": plans}))
    return folder


@pytest.fixture
def predictions(datasets, tmp_path):
    return {plane: write_prediction(tmp_path / f"pred_{plane}", datasets[plane], plane,
                                    channels=2 if plane == "axial" else 1, plans=[0, 1, 2])
            for plane in ("axial", "coronal", "sagittal")}


def read_npz(folder: Path, case: str) -> np.ndarray:
    with np.load(folder / f"{case}.npz") as data:
        return data["probabilities"]


@pytest.mark.parametrize("with_dataset", [True, False])
def test_tri_planar_product(datasets, predictions, tmp_path, with_dataset):
    out = tmp_path / "fused"
    prov = fuse_predictions(out, **predictions, dataset=501 if with_dataset else None)
    source = sitk.ReadImage(str(datasets["axial"] / "imagesTr" / "a_0000.nii.gz"))
    for case in CASES:
        expected = (probabilities("axial", case) * probabilities("coronal", case)) * probabilities("sagittal", case)
        fused = read_npz(out, case)
        assert fused.shape == (1,) + SHAPE and fused.dtype == np.float32
        assert np.array_equal(fused[0], expected)
        seg = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(seg), (expected >= 0.5).astype(np.uint8))
        assert seg.GetSize() == source.GetSize() and seg.GetSpacing() == source.GetSpacing()
        assert seg.GetOrigin() == source.GetOrigin() and seg.GetDirection() == source.GetDirection()
    # by hand, case a: the fracture 0.9 * 0.8 * 0.7 = 0.504 survives, the axial false positive does not
    a = read_npz(out, "a")[0]
    assert a[1, 1, 1] == pytest.approx(0.504) and a[0, 0, 0] == pytest.approx(0.95 * 0.05 * 0.5)
    assert a[2, 3, 4] == pytest.approx(0.729) and a[0, 3, 0] == pytest.approx(0.001)
    # case b: 0.8 * 0.7 * 0.6 = 0.336 < 0.5, so the segmentation is empty where case a's was not
    assert read_npz(out, "b")[0][1, 1, 1] == pytest.approx(0.336)
    assert prov["num_cases"] == 2 and prov["method"] == "product" and prov["warnings"] == []
    on_disk = json.loads((out / "fusion.json").read_text(encoding="utf-8"))
    assert on_disk["planes"]["coronal"]["mapping_to_target"] == {
        "exact index permutation: target (i, j, k) = source (i, k, j)": 2}
    assert on_disk["planes"]["sagittal"]["mapping_to_target"] == {
        "exact index permutation: target (i, j, k) = source (k, i, j)": 2}
    assert on_disk["planes"]["axial"]["mapping_to_target"] == {"identical grids": 2}
    assert on_disk["planes"]["coronal"]["model_2d_slicing"]["plane"] == "coronal"
    assert on_disk["cases"][0] == {"case": "a", "max_probability": pytest.approx(0.729), "voxels_at_threshold": 7}
    # the other commands read the output like an nnU-Net prediction folder
    folder = PredictionFolder.open(out, ".nii.gz")
    assert folder.probability_cases == folder.segmentation_cases == frozenset(CASES)
    assert np.array_equal(load_fracture_probability(out / "a.npz", "a", SHAPE), a)


def test_mean_of_two_planes(datasets, predictions, tmp_path):
    out = tmp_path / "fused"
    fuse_predictions(out, axial=predictions["axial"], sagittal=predictions["sagittal"], method="mean")
    a = read_npz(out, "a")[0]
    assert a[1, 1, 1] == pytest.approx(0.8) and a[0, 0, 0] == pytest.approx(0.725) and a[2, 3, 4] == pytest.approx(0.9)
    assert np.allclose(a, (probabilities("axial", "a") + probabilities("sagittal", "a")) / 2, atol=1e-7)


def test_class_head_fusion_with_maps_and_scalars(datasets, predictions, tmp_path):
    # maps written on the coronal copy's grid (as a coronal class model would): mapped back exactly
    maps = tmp_path / "class_maps"
    maps.mkdir()
    p_class = {}
    for case in CASES:
        p_class[case] = np.linspace(0, 1, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) ** (1 if case == "a" else 2)
        on_source = sitk.GetImageFromArray(p_class[case])
        on_source.CopyInformation(sitk.ReadImage(str(datasets["axial"] / "imagesTr" / f"{case}_0000.nii.gz")))
        sitk.WriteImage(reorient_image(on_source, (0, 2, 1)), str(maps / f"{case}.nii.gz"))
    out = tmp_path / "fused_maps"
    prov = fuse_predictions(out, axial=predictions["axial"], coronal=predictions["coronal"], dataset=501,
                            class_probability=maps)
    for case in CASES:
        seg = probabilities("axial", case) * probabilities("coronal", case)
        assert np.array_equal(read_npz(out, case)[0], seg * p_class[case])
    assert prov["class_probability"]["mapping_to_target"] == {
        "exact index permutation: target (i, j, k) = source (i, k, j)": 2}

    csv = tmp_path / "class.csv"
    csv.write_text("case,probability\nb,0.25\na,0.5\n")
    out = tmp_path / "fused_csv"
    fuse_predictions(out, axial=predictions["axial"], class_probability=csv)  # one plane: P_class x P_seg
    assert np.array_equal(read_npz(out, "a")[0], probabilities("axial", "a") * np.float32(0.5))
    assert np.array_equal(read_npz(out, "b")[0], probabilities("axial", "b") * np.float32(0.25))


def test_slicing_plane_warning(datasets, tmp_path):
    axial = write_prediction(tmp_path / "ax", datasets["axial"], "axial", plans=[0, 1, 2])
    # nnU-Net's default transpose on the coronal copy of thick-slice CT: array axis 1 (the source k) first
    coronal = write_prediction(tmp_path / "co", datasets["coronal"], "coronal", plans=[1, 0, 2])
    prov = fuse_predictions(tmp_path / "fused", axial=axial, coronal=coronal)
    (warning,) = prov["warnings"]
    assert "trained on axial slices, not coronal ones" in warning and "transpose_forward [1, 0, 2]" in warning
    assert prov["planes"]["coronal"]["model_2d_slicing"]["plane"] == "axial"


def test_errors_name_file_case_and_fix(datasets, predictions, tmp_path):
    out = tmp_path / "fused"
    missing = write_prediction(tmp_path / "missing", datasets["coronal"], "coronal")
    (missing / "b.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"--coronal folder .*missing has no probabilities \(.npz\) for "
                                                r"1 case\(s\) that another folder holds: b. Fix"):
        fuse_predictions(out, axial=predictions["axial"], coronal=missing)

    bad = write_prediction(tmp_path / "bad", datasets["sagittal"], "sagittal",
                           values=lambda c: probabilities("sagittal", c) * 1.5)
    with pytest.raises(ValueError, match=r"case a: probabilities in .*bad/a.npz span \[0.15.*outside \[0, 1\]"):
        fuse_predictions(out, axial=predictions["axial"], sagittal=bad)

    # a sagittal model predicted on a copy whose spacing differs: no exact mapping
    other = tmp_path / "other_raw"
    other.mkdir()
    for case in CASES:
        (other / "imagesTr").mkdir(exist_ok=True)
        img = reorient_image(grid(array=np.zeros(SHAPE, np.int16)), (1, 2, 0))
        img.SetSpacing((0.7, 2.5, 0.9))
        sitk.WriteImage(img, str(other / "imagesTr" / f"{case}_0000.nii.gz"))
    (other / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz", "nnunet_fracture": {
        "reorientation": {"case_axis_order": {c: [1, 2, 0] for c in CASES}}}}))
    shifted = write_prediction(tmp_path / "shifted", other, "sagittal")
    with pytest.raises(ValueError, match=r"case a: the --sagittal prediction .*shifted/a.nii.gz cannot be mapped onto "
                                         r"the target grid .*not an axis permutation.*Fix: predict the sagittal model "
                                         r"on the dataset written by `nnunet-fracture reorient`.*--resample"):
        fuse_predictions(out, axial=predictions["axial"], sagittal=shifted)

    with pytest.raises(ValueError, match="without --axial the original grid is unknown. Fix: pass --dataset"):
        fuse_predictions(out, coronal=predictions["coronal"], sagittal=predictions["sagittal"])
    with pytest.raises(ValueError, match="nothing to fuse"):
        fuse_predictions(out, axial=predictions["axial"])
    with pytest.raises(ValueError, match="listed twice"):
        fuse_predictions(out, axial=predictions["axial"], coronal=predictions["axial"])
    csv = tmp_path / "class.csv"
    csv.write_text("case,probability\na,0.5\n")
    with pytest.raises(ValueError, match=r"class.csv has no row for 1 case\(s\): b"):
        fuse_predictions(out, axial=predictions["axial"], class_probability=csv)
    csv.write_text("case,probability\na,0.5\nb,1.2\n")
    with pytest.raises(ValueError, match=r"case b has probability 1.2, not a number in \[0, 1\]"):
        fuse_predictions(out, axial=predictions["axial"], class_probability=csv)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]

    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        fuse_predictions(out, axial=predictions["axial"], sagittal=predictions["sagittal"])
    fuse_predictions(out, axial=predictions["axial"], sagittal=predictions["sagittal"], overwrite=True)
    assert not (out / "old.txt").exists() and (out / "fusion.json").is_file()


def test_dataset_missing_a_case(datasets, predictions, tmp_path):
    (datasets["axial"] / "imagesTr" / "b_0000.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"Dataset501_Src has no image imagesTr/<case>_0000.nii.gz for 1 "
                                                r"predicted case\(s\): b"):
        fuse_predictions(tmp_path / "fused", **predictions, dataset=501)


def test_cli(datasets, predictions, tmp_path, capsys):
    out = tmp_path / "fused"
    args = ["fuse", "--axial", str(predictions["axial"]), "--coronal", str(predictions["coronal"]),
            "--sagittal", str(predictions["sagittal"]), "--dataset", "501", "--out", str(out)]
    assert main(args + ["--method", "mean", "--threshold", "0.6"]) == 0
    assert "fused 2 case(s)" in capsys.readouterr().out
    assert json.loads((out / "fusion.json").read_text(encoding="utf-8"))["threshold"] == 0.6
    assert main(args) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(args[:3] + ["--out", str(tmp_path / "x")]) == 1
    assert "nothing to fuse" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--threshold", "0"]) == 1
    assert "threshold must be in (0, 1]" in capsys.readouterr().err
