"""``pseudo-masks --ignore-faint-boxes``: a box whose mask looks like the rest of the box in HU is ``ignore`` whole
in the exported labels, end to end on a tiny dataset; ``mask_contrast_hu`` by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
from nnunet_fracture.inference.dataset_export import IGNORE_LABEL
from nnunet_fracture.inference.label_options import LabelOptions
from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks

from pseudo_mask_cases import SHAPE, image, prediction_folder, read, rows

# numpy [k, j, i] of shape (4, 5, 6). Box "dense" (i 0-2) holds a 600 HU band at i = 0 in 100 HU bone; box "plain"
# (i 3-5) holds nothing visible, all 100 HU. P = 0.9 on i = 0 and on i = 5, so each box's mask is one column:
# contrast 600 - 100 = +500 HU and 100 - 100 = 0 HU.
DENSE, PLAIN = VoxelBox((0, 0, 0), (2, 4, 3), "L1"), VoxelBox((3, 0, 0), (5, 4, 3), "L2")


@pytest.fixture
def boxes(nnunet_env):
    ct = np.full(SHAPE, 100, np.int16)
    ct[..., 0] = 600
    ct_image = sitk.GetImageFromArray(ct)
    ct_image.CopyInformation(image())
    case = CaseRecord("c", ct_image, [DENSE, PLAIN], None, None, "c.nii.gz")
    return write_raw_dataset([case], 504, "Faint", raw_root=nnunet_env["nnUNet_raw"])


def test_a_faint_box_is_ignored_whole_and_a_distinct_one_kept(boxes, nnunet_env, tmp_path):
    p = np.zeros(SHAPE, np.float32)
    p[..., 0] = p[..., 5] = 0.9
    pred = prediction_folder(tmp_path / "pred", {"c": p})
    prov = write_pseudo_masks([pred], boxes, tmp_path / "out", export_dataset=505, export_name="FaintPseudo",
                              options=LabelOptions(ignore_faint=100))
    table = rows(tmp_path / "out")
    assert [float(table[("c", b)]["mask_contrast_hu"]) for b in (1, 2)] == [500.0, 0.0]
    assert prov["ignore_faint"] == 100 and prov["faint_boxes"] == [{"case": "c", "box_id": 2, "mask_contrast_hu": 0.0}]
    labels = read(nnunet_env["nnUNet_raw"] / "Dataset505_FaintPseudo" / "labelsTr" / "c.nii.gz")
    expected = np.zeros(SHAPE, np.uint8)
    expected[..., 0], expected[..., 3:] = 1, IGNORE_LABEL
    assert np.array_equal(labels, expected)
    exported = json.loads((nnunet_env["nnUNet_raw"] / "Dataset505_FaintPseudo" / "dataset.json").read_text())
    assert exported["labels"]["ignore"] == IGNORE_LABEL


def test_without_the_option_the_contrast_is_only_reported(boxes, tmp_path):
    p = np.zeros(SHAPE, np.float32)
    p[..., 5] = 0.9
    pred = prediction_folder(tmp_path / "pred", {"c": p})
    prov = write_pseudo_masks([pred], boxes, tmp_path / "out")
    table = rows(tmp_path / "out")
    assert table[("c", 1)]["mask_contrast_hu"] == "" and float(table[("c", 2)]["mask_contrast_hu"]) == 0.0
    assert prov["faint_boxes"] == [] and read(tmp_path / "out" / "masks" / "c.nii.gz")[..., 5].all()
