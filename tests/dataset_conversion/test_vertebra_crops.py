"""Per-vertebra crops: neighbour context, geometry kept, boxes clipped or dropped, written datasets valid."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.box_geometry import voxel_to_world_box
from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
from nnunet_fracture.dataset_conversion.vertebra_crops import crop_case, crop_regions

SIZE = (6, 5, 12)  # i, j, k
# along k: T12 (19) k 0-2, T13 (28) k 3-5, L1 (20) k 6-8, L2 (21) k 9-11 but only i 1-4
LAYOUT = {19: (0, 3), 28: (3, 6), 20: (6, 9), 21: (9, 12)}
BOX = VoxelBox((0, 0, 4), (5, 4, 7), "T13-L1", 1)


def spine_case(case_id="s") -> CaseRecord:
    ct = sitk.Image(list(SIZE), sitk.sitkInt16) - 1000
    ct.SetSpacing((0.8, 0.7, 2.5))
    ct.SetOrigin((-10.0, 20.0, 300.0))
    ct.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    array = np.zeros(SIZE[::-1], np.uint8)
    for label, (k0, k1) in LAYOUT.items():
        array[k0:k1] = label
    array[9:12, :, 0] = 0
    array[9:12, :, 5] = 0
    vert = sitk.GetImageFromArray(array)
    vert.CopyInformation(ct)
    mask = sitk.GetImageFromArray((array == 28).astype(np.uint8))
    mask.CopyInformation(ct)
    return CaseRecord(case_id, ct, [BOX], mask, vert, f"{case_id}.nii.gz")


def test_regions_follow_anatomical_order_with_context():
    vert = sitk.GetArrayFromImage(spine_case().vertebrae)
    one = {label: (tuple(lo), tuple(hi)) for label, lo, hi in crop_regions(vert, 1)}
    assert [label for label, _, _ in crop_regions(vert, 1)] == [19, 28, 20, 21]
    assert one[19] == ((0, 0, 0), (5, 4, 5))
    assert one[28] == ((0, 0, 0), (5, 4, 8))
    assert one[20] == ((0, 0, 3), (5, 4, 11))
    assert one[21] == ((0, 0, 6), (5, 4, 11))
    zero = {label: (tuple(lo), tuple(hi)) for label, lo, hi in crop_regions(vert, 0)}
    assert zero[21] == ((1, 0, 9), (4, 4, 11))
    assert zero[19] == ((0, 0, 0), (5, 4, 2))
    with pytest.raises(ValueError):
        crop_regions(vert, -1)


def test_crops_keep_physical_position_and_clip_boxes():
    case = spine_case()
    crops = {c.case_id: c for c in crop_case(case, context=1)}
    assert sorted(crops) == ["s_L1", "s_L2", "s_T12", "s_T13"]
    l2 = crops["s_L2"]
    assert l2.image.GetSize() == (6, 5, 6)
    assert l2.image.GetOrigin() == pytest.approx(case.image.TransformIndexToPhysicalPoint((0, 0, 6)))
    assert l2.image.GetDirection() == case.image.GetDirection()
    for img in (l2.mask, l2.vertebrae):
        assert img.GetOrigin() == l2.image.GetOrigin() and img.GetSize() == l2.image.GetSize()
    assert np.array_equal(sitk.GetArrayFromImage(l2.vertebrae), sitk.GetArrayFromImage(case.vertebrae)[6:12])
    # the box covers k 4-7: k 6-7 fall into the L2 crop (local k 0-1), k 4-5 into the T12 crop
    assert l2.boxes == [VoxelBox((0, 0, 0), (5, 4, 1), "T13-L1", 1)]
    assert crops["s_T12"].boxes == [VoxelBox((0, 0, 4), (5, 4, 5), "T13-L1", 1)]
    in_crop = voxel_to_world_box(l2.image, l2.boxes[0])
    in_full = voxel_to_world_box(case.image, VoxelBox((0, 0, 6), (5, 4, 7)))
    assert np.allclose(in_crop, in_full)
    no_context = {c.case_id: c for c in crop_case(case, context=0)}
    assert no_context["s_T12"].boxes == [] and no_context["s_L2"].boxes == []


def test_write_cropped_dataset_passes_nnunet_check(nnunet_env):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    out = write_raw_dataset([spine_case("s"), spine_case("t")], 540, "Crops", crop_vertebrae=True, context=1)
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["numTraining"] == 8 and meta["nnunet_fracture"]["crop_vertebrae"] is True
    assert meta["nnunet_fracture"]["context"] == 1 and meta["nnunet_fracture"]["num_source_cases"] == 2
    boxes = json.loads((out / "boxes.json").read_text(encoding="utf-8"))
    assert len(boxes["s_T12"]) == 1 and boxes["s_T12"][0]["hi"] == [5, 4, 5]
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "s_L1.nii.gz")))
    assert label.shape == (9, 5, 6) and label.sum() == 4 * 30  # box k 4-7 is local k 1-4 of crop k 3-11
    gt = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "groundTruthTr" / "s_L1.nii.gz")))
    assert gt.sum() == 3 * 30  # T13 slices k 3-5 are local k 0-2
    verify_dataset_integrity(str(out), num_processes=1)


@pytest.mark.parametrize("problem", ["no map", "empty map", "duplicate"])
def test_crop_errors_name_the_case_and_write_nothing(nnunet_env, problem):
    case = spine_case()
    cases = [case]
    if problem == "no map":
        case.vertebrae = None
        match = "case 's'.*need a vertebra label map"
    elif problem == "empty map":
        case.vertebrae = case.vertebrae * 0
        match = "case 's'.*holds no vertebra"
    else:
        cases = [case, spine_case("S")]  # crops S_T12 ... would overwrite s_T12 on case-insensitive disks
        match = "case 'S'.*duplicate"
    with pytest.raises(ValueError, match=match):
        write_raw_dataset(cases, 541, "Crops", crop_vertebrae=True)
    assert list(nnunet_env["nnUNet_raw"].iterdir()) == []
