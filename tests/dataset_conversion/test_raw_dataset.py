"""Writing nnU-Net raw datasets: layout, weak-label modes, nnU-Net's own integrity check, atomicity, errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture import __version__
from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

SIZE = (6, 5, 4)  # i, j, k -> numpy (4, 5, 6); 30 voxels per slice
BOX1 = VoxelBox((0, 0, 0), (2, 2, 1), "L1", 2)  # 3 * 3 * 2 = 18 voxels, slices 0-1
BOX2 = VoxelBox((4, 3, 3), (5, 4, 3), "L2")  # 2 * 2 * 1 = 4 voxels, slice 3


def image(pixel=sitk.sitkInt16, value=-1000, size=SIZE, origin=(1.0, 2.0, 3.0), spacing=(0.8, 0.8, 2.5)):
    img = sitk.Image(list(size), pixel) + value
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    return img


def gt_mask() -> sitk.Image:
    array = np.zeros(SIZE[::-1], np.uint8)
    array[0, 0, :5] = 1
    array[1, 1, :2] = 2  # any value > 0 is fracture
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image())
    return mask


def vertebra_map() -> sitk.Image:
    array = np.zeros(SIZE[::-1], np.uint8)
    array[:2] = 20
    array[2:] = 21
    vert = sitk.GetImageFromArray(array)
    vert.CopyInformation(image())
    return vert


def cases():
    return [CaseRecord("frac", image(), [BOX1, BOX2], gt_mask(), vertebra_map(), "frac.nii.gz"),
            CaseRecord("normal", image(), [], None, None, "normal.nii.gz")]


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_box_mode_layout_and_metadata(nnunet_env):
    out = write_raw_dataset(cases(), 501, "Tiny")
    assert out == nnunet_env["nnUNet_raw"] / "Dataset501_Tiny"
    assert sorted(p.name for p in nnunet_env["nnUNet_raw"].iterdir()) == ["Dataset501_Tiny"]
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["frac_0000.nii.gz", "normal_0000.nii.gz"]
    assert sorted(p.name for p in (out / "groundTruthTr").iterdir()) == ["frac.nii.gz"]
    assert sorted(p.name for p in (out / "vertebraeTr").iterdir()) == ["frac.nii.gz"]

    ct = sitk.ReadImage(str(out / "imagesTr" / "frac_0000.nii.gz"))
    label = sitk.ReadImage(str(out / "labelsTr" / "frac.nii.gz"))
    assert ct.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
    for img in (ct, label):
        assert np.allclose(img.GetOrigin(), image().GetOrigin()) and np.allclose(img.GetSpacing(), (0.8, 0.8, 2.5))
        assert np.allclose(img.GetDirection(), image().GetDirection())
    lab = sitk.GetArrayFromImage(label)  # box numbers: 1 in the first box, 2 in the second
    assert (lab == 1).sum() == 18 and (lab == 2).sum() == 4 and (lab[0:2, 0:3, 0:3] == 1).all()
    assert (lab[3, 3:5, 4:6] == 2).all() and not (out / "instancesTr").exists()
    assert read(out / "labelsTr" / "normal.nii.gz").sum() == 0
    assert read(out / "groundTruthTr" / "frac.nii.gz").sum() == 7
    assert set(np.unique(read(out / "vertebraeTr" / "frac.nii.gz"))) == {20, 21}

    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["channel_names"] == {"0": "CT"} and meta["labels"] == {"background": 0, "fracture": [1, 2]}
    assert meta["regions_class_order"] == [1]
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    prov = meta["nnunet_fracture"]
    assert prov["plugin_version"] == __version__ and prov["weak"] == "box" and prov["source_format"] == "generic"
    assert prov["crop_vertebrae"] is False and prov["created"] and prov["num_boxes"] == 2

    boxes = json.loads((out / "boxes.json").read_text(encoding="utf-8"))
    assert boxes["normal"] == []
    first = boxes["frac"][0]
    assert first["box_id"] == 1 and first["lo"] == [0, 0, 0] and first["hi"] == [2, 2, 1]
    assert first["label"] == "L1" and first["grade"] == 2
    # direction (0 1 0; -1 0 0; 0 0 1): x = 1 + 0.8 j, y = 2 - 0.8 i, z = 3 + 2.5 k
    assert np.allclose(first["world_min"], (1.0, 2.0 - 1.6, 3.0)) and np.allclose(first["world_max"], (2.6, 2.0, 5.5))


def test_slice_mode_fills_whole_slices(nnunet_env):
    out = write_raw_dataset(cases(), 502, "Slices", weak="slice")
    lab = read(out / "labelsTr" / "frac.nii.gz")
    assert (lab[:2] == 1).all() and (lab[3] == 2).all() and (lab[2] == 0).all()


def test_mask_mode_uses_gt_and_needs_masks(nnunet_env):
    out = write_raw_dataset(cases(), 503, "Full", weak="mask")
    lab = read(out / "labelsTr" / "frac.nii.gz")
    assert lab.sum() == 7 and set(np.unique(lab)) == {0, 1}
    assert read(out / "labelsTr" / "normal.nii.gz").sum() == 0
    assert json.loads((out / "dataset.json").read_text(encoding="utf-8"))["labels"] == {"background": 0, "fracture": 1}
    bad = [CaseRecord("nomask", image(), [BOX1])]
    with pytest.raises(ValueError, match="case 'nomask'.*no mask"):
        write_raw_dataset(bad, 504, "Full", weak="mask")
    assert not any(p.name.startswith(("Dataset504", ".Dataset504")) for p in nnunet_env["nnUNet_raw"].iterdir())


@pytest.mark.parametrize("weak", ["box", "slice"])
def test_passes_nnunet_integrity_check(nnunet_env, weak):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    out = write_raw_dataset(cases() + [CaseRecord("other", image(pixel=sitk.sitkFloat32), [BOX2])], 505, "Check",
                            weak=weak)
    verify_dataset_integrity(str(out), num_processes=1)


def nan_image() -> sitk.Image:
    img = image(pixel=sitk.sitkFloat32)
    img[1, 1, 1] = math.nan
    return img


def shifted(img: sitk.Image) -> sitk.Image:
    img.SetOrigin((50.0, 2.0, 3.0))
    return img


BAD_INPUTS = {
    "box outside": (lambda: [CaseRecord("c1", image(), [VoxelBox((0, 0, 0), (6, 1, 1))])], "c1.*not inside"),
    "min > max": (lambda: [CaseRecord("c2", image(), [VoxelBox((2, 0, 0), (1, 1, 1))])], "c2.*larger than max"),
    "nan": (lambda: [CaseRecord("c3", nan_image())], "c3.*NaN"),
    "duplicate": (lambda: [CaseRecord("c4", image()), CaseRecord("c4", image())], "c4.*duplicate"),
    "duplicate case": (lambda: [CaseRecord("c5", image()), CaseRecord("C5", image())], "C5.*duplicate"),
    "path id": (lambda: [CaseRecord("../c6", image())], "'../c6'.*not a plain name"),
    "space id": (lambda: [CaseRecord("c 7", image())], "'c 7'.*not a plain name"),
    "mask geometry": (lambda: [CaseRecord("c8", image(), [], shifted(gt_mask()))], "c8.*mask has origin"),
    "mask size": (lambda: [CaseRecord("c9", image(), [], image(size=(6, 5, 3)))], "c9.*mask has size"),
    "vertebra geometry": (lambda: [CaseRecord("c10", image(), [], None, image(spacing=(1, 1, 1)))],
                          "c10.*vertebra map has spacing"),
    "late error": (lambda: cases() + [CaseRecord("c11", nan_image())], "c11.*NaN"),
    "no cases": (lambda: [], "no cases"),
}


@pytest.mark.parametrize("key", sorted(BAD_INPUTS))
def test_bad_input_raises_and_writes_nothing(nnunet_env, key):
    make, match = BAD_INPUTS[key]
    with pytest.raises(ValueError, match=match):
        write_raw_dataset(make(), 510, "Bad")
    assert list(nnunet_env["nnUNet_raw"].iterdir()) == []


def test_reader_failing_half_way_leaves_nothing(nnunet_env):
    def stream():
        yield from cases()
        raise FileNotFoundError("case 'x': file vanished")

    with pytest.raises(FileNotFoundError, match="case 'x'"):
        write_raw_dataset(stream(), 511, "Half")
    assert list(nnunet_env["nnUNet_raw"].iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"dataset_id": 0}, "1 to 999"), ({"dataset_id": 1000}, "1 to 999"), ({"dataset_id": True}, "1 to 999"),
    ({"dataset_id": "5"}, "1 to 999"), ({"name": "a b"}, "name 'a b'"), ({"name": "../x"}, "name '../x'"),
    ({"name": ""}, "name ''"), ({"weak": "boxes"}, "weak-label mode"), ({"context": -1}, "context"),
])
def test_bad_arguments(nnunet_env, kwargs, match):
    args = {"dataset_id": 512, "name": "Ok"} | kwargs
    with pytest.raises(ValueError, match=match):
        write_raw_dataset(cases(), **args)
    assert list(nnunet_env["nnUNet_raw"].iterdir()) == []


def test_existing_dataset_needs_overwrite_and_is_replaced_only_when_complete(nnunet_env):
    raw = nnunet_env["nnUNet_raw"]
    first = write_raw_dataset(cases(), 520, "Old")
    with pytest.raises(FileExistsError, match="Dataset520_Old.*--overwrite"):
        write_raw_dataset(cases(), 520, "New")
    with pytest.raises(ValueError, match="c3"):
        write_raw_dataset([CaseRecord("c3", nan_image())], 520, "New", overwrite=True)
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset520_Old"] and (first / "dataset.json").is_file()
    new = write_raw_dataset(cases()[:1], 520, "New", overwrite=True, weak="slice")
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset520_New"]
    assert json.loads((new / "dataset.json").read_text(encoding="utf-8"))["numTraining"] == 1


def write_generic(root: Path, rows: str) -> Path:
    (root / "images").mkdir(parents=True)
    sitk.WriteImage(image(), str(root / "images" / "a.nii.gz"))
    sitk.WriteImage(image(), str(root / "images" / "b.nii.gz"))
    (root / "boxes.csv").write_text("case_id,x_min,y_min,z_min,x_max,y_max,z_max,space\n" + rows)
    return root


def test_cli_convert_generic(nnunet_env, tmp_path, capsys):
    src = write_generic(tmp_path / "in", "a,0,0,0,2,2,1,voxel\n")
    assert main(["convert", "generic", str(src), "--dataset-id", "530", "--name", "Cli", "--weak", "slice"]) == 0
    out = nnunet_env["nnUNet_raw"] / "Dataset530_Cli"
    assert read(out / "labelsTr" / "a.nii.gz").sum() == 2 * 30
    assert "wrote" in capsys.readouterr().out


def test_cli_convert_generic_bad_input(nnunet_env, tmp_path, capsys):
    src = write_generic(tmp_path / "in", "a,0,0,0,2,2,1,voxel\nb,0,0,0,9,2,1,voxel\n")
    assert main(["convert", "generic", str(src), "--dataset-id", "531", "--name", "Cli"]) == 1
    err = capsys.readouterr().err
    assert "error" in err and "case 'b'" in err and "not inside the image" in err and "Fix" in err
    assert list(nnunet_env["nnUNet_raw"].iterdir()) == []
