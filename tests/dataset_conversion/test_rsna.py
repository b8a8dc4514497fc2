"""RSNA-2022 reader: DICOM slice order, HU, 2D -> 3D box merging, segmentation orientation, errors."""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.rsna import (
    _by_convention, merge_slice_boxes, pixel_box_to_index, read_rsna, rsna_case_id,
)

NZ, ROWS, COLS = 8, 12, 16
SPACING = (0.5, 0.7, 2.0)  # column spacing, row spacing, slice distance
ORIGIN = (-4.0, -3.0, 10.0)
UID_A, UID_B, UID_C, UID_D = "1.2.826.0.1.1", "1.2.826.0.1.2", "1.2.826.0.1.3", "1.2.826.0.1.4"


def _hu(seed: int) -> np.ndarray:
    """A (k, row, column) HU volume whose k runs inferior -> superior; every voxel has a distinct value."""
    k, j, i = np.meshgrid(np.arange(NZ), np.arange(ROWS), np.arange(COLS), indexing="ij")
    return (k * 1000 + j * 50 + i * 3 - 1024 + seed).astype(np.int16)


def _write_series(folder: Path, uid: str, hu: np.ndarray, top_first: bool) -> None:
    """One file per axial slice, written in shuffled order, named <InstanceNumber>.dcm.

    top_first: InstanceNumber 1 is the most superior slice (most RSNA studies); else the most inferior.
    """
    folder.mkdir(parents=True)
    order = list(range(NZ))
    random.Random(uid).shuffle(order)
    for k in order:
        number = NZ - k if top_first else k + 1
        img = sitk.GetImageFromArray(hu[k])
        img.SetSpacing(SPACING[:2])
        tags = {
            "0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"{uid}.9.{number}",
            "0020|000d": uid, "0020|000e": f"{uid}.9", "0020|0013": str(number),
            "0020|0032": "\\".join(str(v) for v in (ORIGIN[0], ORIGIN[1], ORIGIN[2] + SPACING[2] * k)),
            "0020|0037": "1\\0\\0\\0\\1\\0", "0028|0030": f"{SPACING[1]}\\{SPACING[0]}", "0018|0050": "2.0",
            "0028|1052": "-1024", "0028|1053": "1",
        }
        for tag, value in tags.items():
            img.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"{number}.dcm"))
        writer.Execute(img)


def _vertebra_map() -> np.ndarray:
    """(k, row, column) vertebra labels on the CT grid of study A."""
    vert = np.zeros((NZ, ROWS, COLS), np.uint8)
    vert[4:8, 2:8, 1:9] = 3        # C3 around box A
    vert[0:4, 0:5, 4:10] = 4       # C4 around the two gap boxes
    vert[4, 3:7, 5:7] = 4          # 8 voxels of C4 inside box A: C3 must still win the majority
    vert[5, 8:10, 11:14] = 2       # C2 fills box B
    return vert


def _write_rsna_segmentation(path: Path, vert: np.ndarray, header: bool) -> None:
    """Store a vertebra map the way the RSNA NIfTI files are stored: NIfTI voxel (i, j, k) = column i,
    row ROWS-1-j, k-th slice from the inferior end. header=True also writes the matching geometry."""
    seg = sitk.GetImageFromArray(np.ascontiguousarray(vert[:, ::-1, :]))
    if header:
        seg.SetSpacing(SPACING)
        seg.SetOrigin((ORIGIN[0], ORIGIN[1] + (ROWS - 1) * SPACING[1], ORIGIN[2]))
        seg.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(seg, str(path))


# (slice_number, x, y, width, height); study A has InstanceNumber 1 at the top, so k = 8 - slice_number.
BOXES_A = [
    (2, 2, 3, 4, 3),        # k=6: cols 2..5, rows 3..5     } one box A: cols 2..6, rows 3..6, k 4..6
    (3, 3, 4, 4, 3),        # k=5: cols 3..6, rows 4..6     }
    (4, 2.5, 3.25, 2, 1.5),  # k=4: cols 2..4, rows 3..4    } (fractional: rounded outward)
    (3, 11, 8, 3, 2),       # k=5: cols 11..13, rows 8..9: no overlap with A -> box B
    (6, 6, 1, 2, 2),        # k=2: cols 6..7, rows 1..2     } slice 7 has no overlapping box:
    (8, 6, 1, 2, 2),        # k=0: cols 6..7, rows 1..2     } two boxes
    (7, 14.5, 10, 5, 5),    # k=1: cols 14..15 (clipped), rows 10..11 (clipped)
]
EXPECTED_A = [  # (lo, hi, label), sorted by k
    ((6, 1, 0), (7, 2, 0), "C4"),
    ((14, 10, 1), (15, 11, 1), ""),
    ((6, 1, 2), (7, 2, 2), "C4"),
    ((2, 3, 4), (6, 6, 6), "C3"),
    ((11, 8, 5), (13, 9, 5), "C2"),
]


def _write_tables(root: Path, boxes: dict[str, list[tuple]], overall: dict[str, int]) -> None:
    lines = ["StudyInstanceUID,x,y,width,height,slice_number"]
    lines += [f"{uid},{x},{y},{w},{h},{s}" for uid, rows in boxes.items() for s, x, y, w, h in rows]
    (root / "train_bounding_boxes.csv").write_text("\n".join(lines) + "\n")
    train = ["StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7"]
    train += [f"{uid},{flag},0,{flag},{flag},0,0,0,0" for uid, flag in overall.items()]
    (root / "train.csv").write_text("\n".join(train) + "\n")


@pytest.fixture
def rsna_root(tmp_path: Path) -> Path:
    """A: fractured, segmentation with header; B: normal, bottom-first numbering; C: fracture without box;
    D: normal without images."""
    root = tmp_path / "rsna"
    _write_series(root / "train_images" / UID_A, UID_A, _hu(0), top_first=True)
    _write_series(root / "train_images" / UID_B, UID_B, _hu(7), top_first=False)
    _write_series(root / "train_images" / UID_C, UID_C, _hu(3), top_first=True)
    _write_rsna_segmentation(root / "segmentations" / f"{UID_A}.nii", _vertebra_map(), header=True)
    _write_tables(root, {UID_A: BOXES_A}, {UID_A: 1, UID_B: 0, UID_C: 1, UID_D: 0})
    return root


def test_pixel_box_to_index() -> None:
    assert pixel_box_to_index(10, 4, 5, 2, (16, 12)) == (10, 4, 14, 5)
    assert pixel_box_to_index(10.3, 4.5, 5.2, 0.2, (16, 12)) == (10, 4, 15, 4)
    assert pixel_box_to_index(10.1, 0, 4.9, 1, (16, 12)) == (10, 0, 14, 0)  # 10.1 + 4.9 is not 15.000001
    assert pixel_box_to_index(-3, 10, 5, 9, (16, 12)) == (0, 10, 1, 11)
    assert pixel_box_to_index(16, 0, 2, 2, (16, 12)) is None


def test_merge_slice_boxes() -> None:
    rects = [(3, 0, 0, 4, 4), (4, 4, 4, 6, 6), (5, 7, 7, 8, 8), (7, 0, 0, 1, 1), (4, 10, 0, 11, 1)]
    assert merge_slice_boxes(rects) == [
        ((0, 0, 3), (6, 6, 4)),   # corner-touching rectangles on adjacent slices join
        ((10, 0, 4), (11, 1, 4)),
        ((7, 7, 5), (8, 8, 5)),   # disjoint from its neighbour slice's rectangle
        ((0, 0, 7), (1, 1, 7)),   # after a gap
    ]


def test_read_rsna_cases(rsna_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        cases = list(read_rsna(rsna_root))
    assert [c.case_id for c in cases] == [rsna_case_id(UID_A), rsna_case_id(UID_B)]
    assert rsna_case_id(UID_A) == "1_2_826_0_1_1"
    assert UID_C in caplog.text and "no box" in caplog.text
    a, b = cases
    assert a.source.endswith(UID_A) and b.source.endswith(UID_B)
    assert [(box.lo, box.hi, box.label) for box in a.boxes] == EXPECTED_A
    assert b.boxes == [] and b.vertebrae is None
    for case, seed in ((a, 0), (b, 7)):
        assert case.image.GetSize() == (COLS, ROWS, NZ)
        assert case.image.GetSpacing() == pytest.approx(SPACING)
        assert case.image.GetOrigin() == pytest.approx(ORIGIN)
        assert case.image.GetPixelID() == sitk.sitkInt16
        np.testing.assert_array_equal(sitk.GetArrayFromImage(case.image), _hu(seed))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a.vertebrae), _vertebra_map())
    assert a.vertebrae.GetOrigin() == pytest.approx(ORIGIN)
    # The files store HU + 1024 with RescaleIntercept -1024: the HU above came from the rescale.
    ds = pydicom.dcmread(rsna_root / "train_images" / UID_A / "1.dcm")
    assert float(ds.RescaleIntercept) == -1024 and int(ds.InstanceNumber) == 1
    assert int(ds.pixel_array[0, 0]) == int(_hu(0)[NZ - 1, 0, 0]) + 1024
    assert [c.case_id for c in read_rsna(rsna_root, max_cases=1)] == [a.case_id]


def test_segmentation_without_usable_header_uses_the_array_convention(rsna_root: Path) -> None:
    _write_rsna_segmentation(rsna_root / "segmentations" / f"{UID_A}.nii", _vertebra_map(), header=False)
    a = next(read_rsna(rsna_root))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a.vertebrae), _vertebra_map())
    assert a.vertebrae.GetSpacing() == pytest.approx(SPACING)
    assert [(box.lo, box.hi, box.label) for box in a.boxes] == EXPECTED_A


def test_boxes_follow_file_slice_numbers_not_order(rsna_root: Path) -> None:
    # Study B numbers its slices from the bottom: slice_number s is k = s - 1.
    _write_tables(rsna_root, {UID_B: [(2, 0, 0, 2, 2), (3, 1, 1, 2, 2), (5, 4, 4, 1, 1)]}, {UID_B: 1})
    (case,) = list(read_rsna(rsna_root))
    assert [(box.lo, box.hi, box.label) for box in case.boxes] == [
        ((0, 0, 1), (2, 2, 2), ""), ((4, 4, 4), (4, 4, 4), "")]


def test_convention_for_a_series_running_superior_to_inferior() -> None:
    ct = sitk.Image(COLS, ROWS, NZ, sitk.sitkInt16)
    ct.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, -1))  # k runs towards the feet
    vert = np.zeros((NZ, ROWS, COLS), np.uint8)
    vert[0, 0, 0] = 1   # most superior slice, first row, first column
    vert[NZ - 1, ROWS - 1, 2] = 7
    # Stored: k' from the inferior end, rows flipped, columns as is.
    seg = sitk.GetImageFromArray(np.ascontiguousarray(vert[::-1, ::-1, :]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(_by_convention(seg, ct)), vert)


def test_segmentation_of_the_wrong_size_is_dropped(rsna_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    seg = sitk.Image(COLS, ROWS, NZ - 1, sitk.sitkUInt8)
    sitk.WriteImage(seg, str(rsna_root / "segmentations" / f"{UID_A}.nii"))
    with caplog.at_level(logging.WARNING):
        a = next(read_rsna(rsna_root))
    assert a.vertebrae is None and [box.label for box in a.boxes] == [""] * len(EXPECTED_A)
    assert "segmentation ignored" in caplog.text


@pytest.mark.parametrize("rows, error, message", [
    ([(9, 0, 0, 2, 2)], ValueError, "slice_number 9 is not a slice of"),
    ([(1, 20, 0, 2, 2)], ValueError, "lies outside the 16x12 slice"),
    ([(1, 0, 0, -2, 2)], ValueError, "negative width/height"),
    ([(1.5, 0, 0, 2, 2)], ValueError, "slice_number '1.5' is not an integer"),
    ([(1, "abc", 0, 2, 2)], ValueError, "x 'abc' is not a finite number"),
])
def test_box_errors(rsna_root: Path, rows: list, error: type, message: str) -> None:
    _write_tables(rsna_root, {UID_A: rows}, {UID_A: 1})
    with pytest.raises(error, match="train_bounding_boxes.csv line 2") as err:
        next(read_rsna(rsna_root))
    assert message in str(err.value)


def test_missing_inputs(rsna_root: Path, tmp_path: Path) -> None:
    _write_tables(rsna_root, {"9.9.9": [(1, 0, 0, 2, 2)]}, {})
    with pytest.raises(FileNotFoundError, match="study 9.9.9 .case 9_9_9. has boxes .* but no folder"):
        next(read_rsna(rsna_root))
    (rsna_root / "train_bounding_boxes.csv").write_text("StudyInstanceUID,x,y,w,h,slice_number\n")
    with pytest.raises(ValueError, match="missing column.s. width, height"):
        next(read_rsna(rsna_root))
    with pytest.raises(FileNotFoundError, match="train_images not found"):
        next(read_rsna(tmp_path / "empty"))


def test_header_wins_when_it_disagrees_with_the_convention(rsna_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A segmentation stored in plain DICOM order with an honest header: the header places it exactly.
    seg = sitk.GetImageFromArray(_vertebra_map())
    seg.SetSpacing(SPACING)
    seg.SetOrigin(ORIGIN)
    sitk.WriteImage(seg, str(rsna_root / "segmentations" / f"{UID_A}.nii"))
    with caplog.at_level(logging.WARNING):
        a = next(read_rsna(rsna_root))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a.vertebrae), _vertebra_map())
    assert "disagree; using the header geometry" in caplog.text


def test_cli_convert_rsna(rsna_root: Path, nnunet_env: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    import json

    from nnunet_fracture.cli import main

    assert main(["convert", "rsna", str(rsna_root), "--dataset-id", "902", "--name", "Rsna"]) == 0
    folder = nnunet_env["nnUNet_raw"] / "Dataset902_Rsna"
    boxes = json.loads((folder / "boxes.json").read_text(encoding="utf-8"))
    assert sorted(boxes) == ["1_2_826_0_1_1", "1_2_826_0_1_2"] and boxes["1_2_826_0_1_2"] == []
    assert [(b["lo"], b["hi"], b["label"]) for b in boxes["1_2_826_0_1_1"]] == [
        (list(lo), list(hi), label) for lo, hi, label in EXPECTED_A]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / "1_2_826_0_1_1.nii.gz")))
    assert labels[4:7, 3:7, 2:7].all() and (labels > 0).sum() == sum(
        (h[0] - l[0] + 1) * (h[1] - l[1] + 1) * (h[2] - l[2] + 1) for l, h, _ in EXPECTED_A)
    assert (folder / "vertebraeTr" / "1_2_826_0_1_1.nii.gz").is_file()
    _write_tables(rsna_root, {UID_A: [(9, 0, 0, 2, 2)]}, {UID_A: 1})
    assert main(["convert", "rsna", str(rsna_root), "--dataset-id", "903", "--name", "Bad"]) == 1
    assert "slice_number 9 is not a slice of" in capsys.readouterr().err
    assert not (nnunet_env["nnUNet_raw"] / "Dataset903_Bad").exists()


def test_box_row_with_an_extra_field_is_refused(rsna_root: Path) -> None:
    # a 7th field used to be dropped silently (here: the box would have landed on slice 5 instead of 4)
    path = rsna_root / "train_bounding_boxes.csv"
    path.write_text(f"StudyInstanceUID,x,y,width,height,slice_number\n{UID_A},1,2,2,2,4\n\n{UID_A},1,2,2,2,4,5\n")
    message = (f"{path} line 4: 7 fields but the header has 6 (StudyInstanceUID,x,y,width,height,slice_number); a "
               f"stray or missing comma shifts the columns. Fix: give the row exactly 6 comma-separated fields, one "
               f"per header column (leave optional ones empty, quote text that contains a comma).")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        next(read_rsna(rsna_root))


@pytest.mark.parametrize("uid", ["..", "../etc", "1.2/../3", ".", "1..2", "abc"])
def test_a_study_uid_that_is_a_path_is_refused_before_any_read(rsna_root: Path, uid: str) -> None:
    # '..' used to become case '__' and read the DICOMs of the competition folder's parent
    _write_tables(rsna_root, {uid: [(1, 0, 0, 2, 2)]}, {UID_A: 1})
    with pytest.raises(ValueError, match=r"train_bounding_boxes.csv line 2: StudyInstanceUID .* is not a DICOM UID"):
        next(read_rsna(rsna_root))
    _write_tables(rsna_root, {UID_A: [(1, 0, 0, 2, 2)]}, {uid: 0})
    with pytest.raises(ValueError, match=r"train.csv line 2: StudyInstanceUID .* is not a DICOM UID"):
        next(read_rsna(rsna_root))
