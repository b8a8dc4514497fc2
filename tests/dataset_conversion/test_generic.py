"""Reading the generic input format: boxes in both spaces, lazy cases, and a clear error for every bad input."""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.case import VoxelBox
from nnunet_fracture.dataset_conversion.generic import read_generic

HEADER = "case_id,x_min,y_min,z_min,x_max,y_max,z_max,space,label,grade\n"


def ct(size=(10, 12, 8), spacing=(0.8, 0.8, 2.5), origin=(10.0, -20.0, 5.0), pixel=sitk.sitkInt16,
       value=-1000) -> sitk.Image:
    image = sitk.Image(list(size), pixel) + value
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def make_folder(root: Path, rows: str = "", cases=("a", "b"), masks=("a",), vertebrae=("a",)) -> Path:
    for sub in ("images", "masks", "vertebrae"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for case in cases:
        sitk.WriteImage(ct(), str(root / "images" / f"{case}.nii.gz"))
    for case in masks:
        sitk.WriteImage(ct(pixel=sitk.sitkUInt8, value=0), str(root / "masks" / f"{case}.nii.gz"))
    for case in vertebrae:
        sitk.WriteImage(ct(pixel=sitk.sitkUInt8, value=20), str(root / "vertebrae" / f"{case}.nrrd"))
    (root / "boxes.csv").write_text(HEADER + rows)
    return root


def test_reads_world_and_voxel_boxes_masks_and_vertebrae(tmp_path):
    # world: i = (x - 10) / 0.8 in [1.25, 3.75] -> 2..3; j = (y + 20) / 0.8 in [0, 2.5] -> 0..2;
    # k = (z - 5) / 2.5 in [1, 3] -> 1..3
    rows = "a,11,-20,7.5,13,-18,12.5,world,L1,2\na,0,1,2,3,4,5,voxel,,\n"
    cases = read_generic(make_folder(tmp_path, rows))
    assert isinstance(cases, types.GeneratorType)
    a, b = list(cases)
    assert (a.case_id, b.case_id) == ("a", "b")
    assert a.boxes == [VoxelBox((2, 0, 1), (3, 2, 3), "L1", 2), VoxelBox((0, 1, 2), (3, 4, 5), "", None)]
    assert a.mask is not None and a.vertebrae is not None and a.source.endswith("a.nii.gz")
    assert b.boxes == [] and b.mask is None and b.vertebrae is None


def test_world_box_reaching_past_the_image_is_clipped(tmp_path):
    # i = (x - 10) / 0.8 in [-12.5, 2.5], j = (y + 20) / 0.8 in [-12.5, 6.25], k = (z - 5) / 2.5 in [-2, 38]
    (a, _) = read_generic(make_folder(tmp_path, "a,0,-30,0,12,-15,100,world,,\n"))
    assert a.boxes == [VoxelBox((0, 0, 0), (2, 6, 7))]


def test_header_only_table_and_other_formats(tmp_path):
    root = make_folder(tmp_path, cases=("a",), masks=(), vertebrae=())
    sitk.WriteImage(ct(), str(root / "images" / "c.mha"))
    sitk.WriteImage(ct(), str(root / "images" / "d.nrrd"))
    assert [c.case_id for c in read_generic(root)] == ["a", "c", "d"]


def test_reads_lazily_one_case_at_a_time(tmp_path, monkeypatch):
    root = make_folder(tmp_path)
    reads = []
    original = sitk.ReadImage
    monkeypatch.setattr(sitk, "ReadImage", lambda p, *a: reads.append(p) or original(p, *a))
    cases = read_generic(root)
    assert reads == []
    next(cases)
    assert all("/b." not in r for r in reads)


def expect_error(root: Path, match: str, exc=ValueError, lazy=False):
    with pytest.raises(exc, match=match):
        cases = read_generic(root)
        if lazy:
            list(cases)


def test_missing_boxes_csv(tmp_path):
    root = make_folder(tmp_path)
    (root / "boxes.csv").unlink()
    expect_error(root, "boxes.csv not found.*header", FileNotFoundError)


def test_missing_images_folder(tmp_path):
    expect_error(tmp_path, "images not found", FileNotFoundError)


def test_missing_columns(tmp_path):
    root = make_folder(tmp_path)
    (root / "boxes.csv").write_text("case_id,x_min,y_min,z_min,x_max,y_max,z_max\na,0,0,0,1,1,1\n")
    expect_error(root, "missing column.*space")


def test_unknown_space(tmp_path):
    expect_error(make_folder(tmp_path, "a,0,0,0,1,1,1,mm,,\n"), "line 2: case 'a': unknown space 'mm'")


def test_min_larger_than_max(tmp_path):
    expect_error(make_folder(tmp_path, "a,0,0,0,1,1,1,voxel,,\nb,0,5,0,1,1,1,voxel,,\n"),
                 "line 3: case 'b': box min .* larger than max")


def test_non_numeric_and_fractional_voxel_coordinates(tmp_path):
    expect_error(make_folder(tmp_path, "a,0,zero,0,1,1,1,voxel,,\n"), "case 'a'.*y_min must be a finite number")
    expect_error(make_folder(tmp_path, "a,0,0.5,0,1,1,1,voxel,,\n"), "case 'a'.*whole numbers")
    expect_error(make_folder(tmp_path, "a,0,0,0,1,1,1,voxel,,x\n"), "case 'a'.*grade")


@pytest.mark.parametrize("grade", ["7", "1e23", "-1", "2.5"])
def test_grade_outside_genant_is_refused(tmp_path, grade):
    expect_error(make_folder(tmp_path, f"a,0,0,0,1,1,1,voxel,,{grade}\n"),
                 rf"case 'a': grade must be a Genant grade, a whole number from 0 to 3, got '{grade}'")


def test_row_for_unknown_case(tmp_path):
    expect_error(make_folder(tmp_path, "zz,0,0,0,1,1,1,voxel,,\n"), "case 'zz' has a box but no image")


def test_case_id_that_is_not_a_plain_name_in_table(tmp_path):
    expect_error(make_folder(tmp_path, "../a,0,0,0,1,1,1,voxel,,\n"), "case '../a'.*not a plain name")


def test_case_id_that_is_not_a_plain_name_as_file(tmp_path):
    root = make_folder(tmp_path)
    sitk.WriteImage(ct(), str(root / "images" / "bad name.nii.gz"))
    expect_error(root, "case 'bad name'.*not a plain name")


def test_duplicate_case_files(tmp_path):
    root = make_folder(tmp_path)
    sitk.WriteImage(ct(), str(root / "images" / "a.mha"))
    expect_error(root, "case 'a': two files .* a.mha and a.nii.gz")


def test_unsupported_file_and_orphan_mask(tmp_path):
    root = make_folder(tmp_path)
    (root / "images" / "notes.txt").write_text("hi")
    expect_error(root, "notes.txt: unsupported file type")
    (root / "images" / "notes.txt").unlink()
    sitk.WriteImage(ct(), str(root / "masks" / "ghost.nii.gz"))
    expect_error(root, "case 'ghost'.*has no CT")


def test_voxel_box_outside_image(tmp_path):
    expect_error(make_folder(tmp_path, "a,0,0,0,10,1,1,voxel,,\n"), "case 'a'.*not inside the image", lazy=True)


def test_world_box_outside_image(tmp_path):
    expect_error(make_folder(tmp_path, "a,-500,-500,-500,-400,-400,-400,world,,\n"),
                 "case 'a'.*contains no voxel centre", lazy=True)


@pytest.mark.parametrize("change", ["size", "spacing", "origin", "direction"])
@pytest.mark.parametrize("what", ["masks", "vertebrae"])
def test_mask_or_vertebra_map_with_other_geometry(tmp_path, change, what):
    root = make_folder(tmp_path)
    kwargs = {"size": {"size": (10, 12, 9)}, "spacing": {"spacing": (0.8, 0.8, 2.0)},
              "origin": {"origin": (10.0, -20.0, 6.0)}}.get(change, {})
    other = ct(pixel=sitk.sitkUInt8, value=0, **kwargs)
    if change == "direction":
        other.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    for f in (root / what).glob("a.*"):
        f.unlink()
    sitk.WriteImage(other, str(root / what / "a.nii.gz"))
    expect_error(root, f"case 'a' \\(from .*{what}/a.nii.gz\\).*{change}", lazy=True)


def test_tiny_header_rounding_is_tolerated(tmp_path):
    root = make_folder(tmp_path)
    sitk.WriteImage(ct(pixel=sitk.sitkUInt8, value=0, origin=(10.0 + 1e-5, -20.0, 5.0)),
                    str(root / "masks" / "a.nii.gz"))
    a, _ = read_generic(root)
    assert a.mask.GetOrigin() == a.image.GetOrigin()
    assert np.all(sitk.GetArrayViewFromImage(a.mask) == 0)
