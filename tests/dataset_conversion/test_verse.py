"""VerSe reader: pairing, grade table, boxes from vertebra masks, and every error path."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.verse import read_verse
from nnunet_fracture.dataset_conversion.vertebra_labels import parse_vertebra, vertebra_label, vertebra_name

SHAPE = (12, 16, 20)  # z, y, x


def _image(array: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((0.8, 0.9, 2.0))
    img.SetOrigin((-10.0, 5.0, 30.0))
    return img


def _write_case(root: Path, rel: str, prefix: str, blocks: dict[int, tuple[slice, slice, slice]],
                mask: bool = True) -> np.ndarray:
    ct = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 2000 - 1000).astype(np.int16)
    (root / "rawdata" / rel).mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(_image(ct), str(root / "rawdata" / rel / f"{prefix}_ct.nii.gz"))
    labels = np.zeros(SHAPE, np.uint8)
    for label, (zs, ys, xs) in blocks.items():
        labels[zs, ys, xs] = label
    if mask:
        (root / "derivatives" / rel).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(_image(labels), str(root / "derivatives" / rel / f"{prefix}_seg-vert_msk.nii.gz"))
        (root / "derivatives" / rel / f"{prefix}_seg-vert_ctd.json").write_text("[]")
    return labels


@pytest.fixture
def verse_root(tmp_path: Path) -> Path:
    """Two subjects; sub-gl003 has two scans (dir-ax, dir-sag) in a ses- folder."""
    root = tmp_path / "verse"
    # sub-verse004: L1 (20) x 2..5, y 3..7, z 1..3; L2 (21) x 4..9, y 3..8, z 5..8; T12 (19) x 0..2, y 0..1, z 10..11
    _write_case(root, "sub-verse004", "sub-verse004", {
        20: (slice(1, 4), slice(3, 8), slice(2, 6)),
        21: (slice(5, 9), slice(3, 9), slice(4, 10)),
        19: (slice(10, 12), slice(0, 2), slice(0, 3)),
    })
    _write_case(root, "sub-gl003/ses-01", "sub-gl003_dir-ax", {11: (slice(0, 5), slice(0, 16), slice(0, 20))})
    # T4 (11) x 7..8, y 9..9, z 2..2 ; T13 (28) x 10..19, y 10..15, z 6..11
    _write_case(root, "sub-gl003/ses-01", "sub-gl003_dir-sag", {
        11: (slice(2, 3), slice(9, 10), slice(7, 9)),
        28: (slice(6, 12), slice(10, 16), slice(10, 20)),
    })
    return root


def _grades(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grades.csv"
    path.write_text(text)
    return path


def test_vertebra_table() -> None:
    assert vertebra_label("t4") == 11 and vertebra_label(" L5 ") == 24 and vertebra_label("T13") == 28
    assert vertebra_name(1) == "C1" and vertebra_name(19) == "T12" and vertebra_name(25) == "L6"
    assert parse_vertebra("20") == 20 and parse_vertebra("l1") == 20
    for bad in ("26", "X9", "L7", ""):
        with pytest.raises(ValueError):
            parse_vertebra(bad)


def test_boxes_labels_grades_and_fracture_free(verse_root: Path, tmp_path: Path) -> None:
    grades = _grades(tmp_path, "subject,vertebra,grade\n"
                               "sub-verse004,l1,2\n"
                               "sub-verse004,21,0\n"
                               "verse004,T12,3\n"
                               "sub-gl003_dir-ax,T4,0\n")
    cases = list(read_verse(verse_root, grades))
    assert [c.case_id for c in cases] == ["sub-gl003_dir-ax", "sub-gl003_dir-sag", "sub-verse004"]
    by_id = {c.case_id: c for c in cases}
    assert by_id["sub-gl003_dir-ax"].boxes == [] and by_id["sub-gl003_dir-sag"].boxes == []
    v004 = by_id["sub-verse004"]
    assert [(b.lo, b.hi, b.label, b.grade) for b in v004.boxes] == [
        ((0, 0, 10), (2, 1, 11), "T12", 3),
        ((2, 3, 1), (5, 7, 3), "L1", 2),
    ]
    assert v004.source.endswith("sub-verse004_ct.nii.gz")
    assert v004.image.GetSize() == (20, 16, 12) and v004.image.GetSpacing() == pytest.approx((0.8, 0.9, 2.0))
    vert = sitk.GetArrayFromImage(v004.vertebrae)
    assert vert.dtype == np.uint8 and set(np.unique(vert)) == {0, 19, 20, 21}
    assert v004.vertebrae.GetOrigin() == v004.image.GetOrigin()

    high = {c.case_id: c for c in read_verse(verse_root, grades, min_grade=3)}
    assert [(b.label, b.grade) for b in high["sub-verse004"].boxes] == [("T12", 3)]


def test_subject_rows_apply_to_every_scan_of_the_subject(verse_root: Path, tmp_path: Path) -> None:
    # T4 is in both gl003 scans, T13 only in dir-sag: no error, one box per scan that shows the vertebra.
    grades = _grades(tmp_path, "Subject ID,Level,Genant\nsub-gl003,T4,1\ngl003,t13,2\n")
    by_id = {c.case_id: c for c in read_verse(verse_root, grades)}
    assert [(b.lo, b.hi, b.label) for b in by_id["sub-gl003_dir-ax"].boxes] == [((0, 0, 0), (19, 15, 4), "T4")]
    assert [(b.lo, b.hi, b.label, b.grade) for b in by_id["sub-gl003_dir-sag"].boxes] == [
        ((7, 9, 2), (8, 9, 2), "T4", 1), ((10, 10, 6), (19, 15, 11), "T13", 2)]
    assert by_id["sub-verse004"].boxes == []


@pytest.mark.parametrize("rows, message", [
    ("sub-verse999,L1,1\n", "subject 'sub-verse999' matches no case"),
    ("sub-verse004,X9,1\n", "'X9' is neither"),
    ("sub-verse004,26,1\n", "'26' is not a VerSe vertebra label"),
    ("sub-verse004,L1,1.5\n", "grade '1.5' is not an integer"),
    ("sub-verse004,L1,two\n", "grade 'two' is not an integer"),
    ("sub-verse004,L1,\n", "grade '' is not an integer"),
    ("sub-verse004,L1,4\n", "grade '4' is not an integer Genant grade 0-3"),
    ("sub-verse004,L1,1\nsub-verse004,20,2\n", "has grade 2 here but 1 on line 2"),
])
def test_grade_table_errors(verse_root: Path, tmp_path: Path, rows: str, message: str) -> None:
    grades = _grades(tmp_path, "subject,vertebra,grade\n" + rows)
    with pytest.raises(ValueError, match="grades.csv line") as err:
        next(read_verse(verse_root, grades))
    assert message in str(err.value)


def test_ambiguous_or_missing_columns(verse_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="several columns .*'subject'"):
        next(read_verse(verse_root, _grades(tmp_path, "subject,case,vertebra,grade\n")))
    with pytest.raises(ValueError, match="no column for 'grade'"):
        next(read_verse(verse_root, _grades(tmp_path, "subject,vertebra,score\n")))


def test_graded_vertebra_absent_from_mask(verse_root: Path, tmp_path: Path) -> None:
    grades = _grades(tmp_path, "subject,vertebra,grade\nsub-verse004,L3,2\n")
    with pytest.raises(ValueError) as err:
        list(read_verse(verse_root, grades))
    text = str(err.value)
    assert "L3 (label 22)" in text and "sub-verse004_seg-vert_msk.nii.gz" in text and "L1=20" in text
    # A subject-level row is only an error when no scan of the subject shows the vertebra.
    grades = _grades(tmp_path, "subject,vertebra,grade\nsub-gl003,L1,1\n")
    with pytest.raises(ValueError, match="absent from the masks of sub-gl003_dir-ax, sub-gl003_dir-sag"):
        list(read_verse(verse_root, grades))


def test_ct_without_mask(verse_root: Path, tmp_path: Path) -> None:
    _write_case(verse_root, "sub-verse005", "sub-verse005", {}, mask=False)
    with pytest.raises(FileNotFoundError, match="case sub-verse005: CT .* has no vertebra mask.*add the mask"):
        next(read_verse(verse_root, _grades(tmp_path, "subject,vertebra,grade\n")))


def test_mask_off_the_ct_grid(verse_root: Path, tmp_path: Path) -> None:
    path = verse_root / "derivatives" / "sub-verse004" / "sub-verse004_seg-vert_msk.nii.gz"
    mask = sitk.ReadImage(str(path))
    mask.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(mask, str(path))
    cases = read_verse(verse_root, _grades(tmp_path, "subject,vertebra,grade\n"))
    next(cases), next(cases)
    with pytest.raises(ValueError, match="case sub-verse004: vertebra mask .* is not on the CT's voxel grid"):
        next(cases)


def test_missing_folders_and_bad_min_grade(tmp_path: Path) -> None:
    grades = _grades(tmp_path, "subject,vertebra,grade\n")
    with pytest.raises(FileNotFoundError, match="rawdata not found"):
        next(read_verse(tmp_path / "nowhere", grades))
    with pytest.raises(ValueError, match="min_grade 0"):
        next(read_verse(tmp_path, grades, min_grade=0))


def test_cli_convert_verse(verse_root: Path, tmp_path: Path, nnunet_env: dict[str, Path],
                           capsys: pytest.CaptureFixture) -> None:
    import json

    from nnunet_fracture.cli import main

    grades = _grades(tmp_path, "subject,vertebra,grade\nsub-verse004,L1,2\nsub-verse004,L2,1\n")
    assert main(["convert", "verse", str(verse_root), "--grades", str(grades), "--min-grade", "2",
                 "--dataset-id", "901", "--name", "Verse"]) == 0
    folder = nnunet_env["nnUNet_raw"] / "Dataset901_Verse"
    boxes = json.loads((folder / "boxes.json").read_text(encoding="utf-8"))
    assert sorted(boxes) == ["sub-gl003_dir-ax", "sub-gl003_dir-sag", "sub-verse004"]
    assert [(b["lo"], b["hi"], b["label"], b["grade"]) for b in boxes["sub-verse004"]] == [
        ([2, 3, 1], [5, 7, 3], "L1", 2)]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / "sub-verse004.nii.gz")))
    assert labels.sum() == 4 * 5 * 3 and labels[1:4, 3:8, 2:6].all()
    vert = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "vertebraeTr" / "sub-verse004.nii.gz")))
    assert set(np.unique(vert)) == {0, 19, 20, 21}

    bad = _grades(tmp_path, "subject,vertebra,grade\nsub-verse004,L3,2\n")
    assert main(["convert", "verse", str(verse_root), "--grades", str(bad), "--dataset-id", "902",
                 "--name", "Bad"]) == 1
    assert "L3 (label 22)" in capsys.readouterr().err
    assert not (nnunet_env["nnUNet_raw"] / "Dataset902_Bad").exists()


def _replace_ct(verse_root: Path, array: np.ndarray) -> Path:
    """Rewrite sub-verse004's CT with nibabel (array in i, j, k order), which stores NaN as it is."""
    import nibabel

    path = verse_root / "rawdata" / "sub-verse004" / "sub-verse004_ct.nii.gz"
    nibabel.save(nibabel.Nifti1Image(array, np.diag([0.8, 0.9, 2.0, 1.0])), str(path))
    return path


def test_ct_with_nan_voxels_is_refused(verse_root: Path, tmp_path: Path) -> None:
    # SimpleITK reads NaN in a NIfTI as 0; the file itself is checked
    array = np.zeros(SHAPE[::-1], np.float32)
    array[3, 4, 5] = np.nan
    path = _replace_ct(verse_root, array)
    message = (f"case 'sub-verse004' (from {path}): the CT stores 1 NaN or infinite voxel(s) (SimpleITK would read "
               f"them as 0). Fix: replace them with a real value (for example -1024 HU, air) before converting.")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        list(read_verse(verse_root, _grades(tmp_path, "subject,vertebra,grade\n")))


def test_4d_ct_is_named_not_its_mask(verse_root: Path, tmp_path: Path) -> None:
    # was "vertebra mask ... has size (20, 16, 12) but the CT has (20, 16, 12, 2)"
    path = _replace_ct(verse_root, np.zeros(SHAPE[::-1] + (2,), np.int16))
    message = (f"case 'sub-verse004': CT {path} has 4 dimensions (size (20, 16, 12, 2)); the converter needs 3D CT "
               f"volumes. Fix: export the CT as one 3D volume (a 2D slice cannot be converted; split a 4D series "
               f"into one 3D file per time point or phase and give each its own case).")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        list(read_verse(verse_root, _grades(tmp_path, "subject,vertebra,grade\nsub-verse004,L1,2\n")))


def test_grade_row_with_an_extra_field_is_refused(verse_root: Path, tmp_path: Path) -> None:
    # a 4th field used to be ignored silently
    grades = _grades(tmp_path, "subject,vertebra,grade\nsub-verse004,L1,2\nsub-verse004,L,1,2\n")
    message = (f"{grades} line 3: 4 fields but the header has 3 (subject,vertebra,grade); a stray or missing comma "
               f"shifts the columns. Fix: give the row exactly 3 comma-separated fields, one per header column (leave "
               f"optional ones empty, quote text that contains a comma).")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        next(read_verse(verse_root, grades))
