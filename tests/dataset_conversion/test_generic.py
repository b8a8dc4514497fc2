"""Reading the generic input format: boxes in both spaces, lazy cases, and a clear error for every bad input."""
from __future__ import annotations

import re
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


def test_world_box_reaching_past_the_image_is_clipped_with_a_warning(tmp_path, capsys):
    # i = (x - 10) / 0.8 in [-12.5, 2.5], j = (y + 20) / 0.8 in [-12.5, 6.25], k = (z - 5) / 2.5 in [-2, 8.8]:
    # voxel box (-12, -12, -2)-(2, 6, 8) on an image of 10 x 12 x 8 reaches 12 * 0.8 = 9.6 mm past it (< 10 mm)
    (a, _) = read_generic(make_folder(tmp_path, "a,0,-30,0,12,-15,27,world,,\n"))
    assert a.boxes == [VoxelBox((0, 0, 0), (2, 6, 7))]
    err = capsys.readouterr().err
    assert "boxes.csv line 2: case 'a'" in err and "reaches 9.6 mm past the image; clipped to voxels (0, 0, 0)-(2, 6, 7)" in err


@pytest.mark.parametrize("row, reach", [("a,0,-30,0,12,-15,9999,world,,", "reaches 9975 mm past"),  # k 3997 - 7: 3990 slices
                                        ("a,0,-30,0,12,-15,1e20,world,,", r"more than 1e\+09 voxels"),
                                        ("a,-1e20,-30,0,12,-15,20,world,,", r"more than 1e\+09 voxels")])
def test_world_box_far_outside_the_image_is_refused(tmp_path, row, reach):
    expect_error(make_folder(tmp_path, row + "\n"), f"case 'a'.*{reach}", lazy=True)


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
                 "case 'a'.*reaches 509.6 mm past the image, more than the 10 mm", lazy=True)
    # within the tolerance but between two slices past the edge (k = (z - 5) / 2.5 in [-1.6, -1.2])
    expect_error(make_folder(tmp_path / "thin", "a,10,-20,1,12,-15,2,world,,\n"), "case 'a'.*contains no voxel centre",
                 lazy=True)


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


def exact(message: str) -> str:
    """A ``match`` pattern for exactly ``message`` (one line, nothing before or after)."""
    return "^" + re.escape(message) + "$"


def write_ct(root: Path, array: np.ndarray, case: str = "a") -> Path:
    """Write ``array`` (nibabel order i, j, k) as images/<case>.nii.gz with nibabel, which keeps NaN as stored."""
    import nibabel

    path = root / "images" / f"{case}.nii.gz"
    for f in (root / "images").glob(f"{case}.*"):
        f.unlink()
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nifti_ct_with_nan_or_infinite_voxels_is_refused(tmp_path, bad, dtype):
    # SimpleITK's NIfTI reader turns NaN and infinite voxels into 0 without a word; the file itself is checked
    array = np.zeros((10, 12, 8), dtype)
    array[1, 2, 3] = bad
    path = write_ct(make_folder(tmp_path, masks=(), vertebrae=()), array)
    expect_error(tmp_path, exact(f"case 'a' (from {path}): the CT stores 1 NaN or infinite voxel(s) (SimpleITK would "
                                 f"read them as 0). Fix: replace them with a real value (for example -1024 HU, air) "
                                 f"before converting."), lazy=True)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_ct_beyond_float32_range_is_refused(tmp_path, suffix):
    # nnU-Net reads CTs as float32: 1e308 would become inf there
    root = make_folder(tmp_path, masks=(), vertebrae=())
    array = np.zeros((8, 12, 10))
    array[1, 2, 3] = -1e308
    (root / "images" / "a.nii.gz").unlink()
    path = root / "images" / f"a{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    expect_error(root, exact(f"case 'a' (from {path}): the CT has 1 voxel(s) beyond the float32 range (|value| > "
                             f"3.403e+38, e.g. -1e+308); nnU-Net reads CTs as float32, where they become infinite. "
                             f"Fix: replace them with a real value in HU (for example -1024, air) before converting."),
                 lazy=True)


def test_float_ct_with_finite_values_is_accepted(tmp_path):
    array = np.full((10, 12, 8), -1000.0)
    write_ct(make_folder(tmp_path, "a,0,0,0,1,1,1,voxel,,\n", masks=(), vertebrae=()), array)
    a, _ = read_generic(tmp_path)
    assert a.boxes == [VoxelBox((0, 0, 0), (1, 1, 1))] and float(sitk.GetArrayViewFromImage(a.image).min()) == -1000


def test_more_than_255_boxes_names_the_case_and_writes_nothing(tmp_path):
    from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

    root = make_folder(tmp_path / "in", "a,0,0,0,1,1,1,voxel,,\n" * 256, masks=(), vertebrae=())
    message = (f"case 'a' (from {root / 'images' / 'a.nii.gz'}): 256 boxes in this case, but --weak box stores box n "
               f"as label value n in a uint8 map, so at most 255 boxes fit. Fix: merge overlapping or duplicate boxes "
               f"of this case to at most 255 (or use --crop-vertebrae or --weak mask).")
    with pytest.raises(ValueError, match=exact(message)):
        write_raw_dataset(read_generic(root), 540, "Many", raw_root=tmp_path / "raw")
    assert list((tmp_path / "raw").iterdir()) == []


@pytest.mark.parametrize("row, fields", [("a,0,0,0,1,1,1,voxel,,,20\n", 11), ("a,0,0,0,1,1,1,voxel\n", 8)])
def test_row_with_more_or_fewer_fields_than_the_header(tmp_path, row, fields):
    # an extra field used to shift the columns ("case '0', space ''"); a missing one used to pass unnoticed
    root = make_folder(tmp_path, "a,0,0,0,1,1,1,voxel,L1,2\n\n" + row)
    expect_error(root, exact(f"{root / 'boxes.csv'} line 4: {fields} fields but the header has 10 (case_id,x_min,"
                             f"y_min,z_min,x_max,y_max,z_max,space,label,grade); a stray or missing comma shifts the "
                             f"columns. Fix: give the row exactly 10 comma-separated fields, one per header column "
                             f"(leave optional ones empty, quote text that contains a comma)."))


def test_quoted_label_with_a_comma_is_one_field(tmp_path):
    (a, _) = read_generic(make_folder(tmp_path, 'a,0,0,0,1,1,1,voxel,"L1, L2",\n'))
    assert a.boxes == [VoxelBox((0, 0, 0), (1, 1, 1), "L1, L2")]


@pytest.mark.parametrize("size", [(10, 12), (10, 12, 8, 2)])
@pytest.mark.parametrize("space", ["voxel", "world", None])
def test_ct_that_is_not_3d_is_named_before_boxes_and_masks(tmp_path, size, space):
    # was a numpy broadcast error (voxel boxes), "expected a 3D image" (world boxes) or blamed on the mask (no box)
    root = make_folder(tmp_path, f"a,10,-20,5,11,-19,6,{space},,\n" if space else "")
    sitk.WriteImage(sitk.Image(list(size), sitk.sitkInt16), str(root / "images" / "a.nii.gz"))
    expect_error(root, exact(f"case 'a': CT {root / 'images' / 'a.nii.gz'} has {len(size)} dimensions (size {size}); "
                             f"the converter needs 3D CT volumes. Fix: export the CT as one 3D volume (a 2D slice "
                             f"cannot be converted; split a 4D series into one 3D file per time point or phase and "
                             f"give each its own case)."), lazy=True)
