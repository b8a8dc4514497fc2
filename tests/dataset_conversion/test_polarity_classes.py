"""Fracture masks split by polarity: hand-made components, the phantom's fracture kinds, the written dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.polarity_classes import (DENSE, LUCENT, polarity_classes,
                                                                   write_polarity_dataset)
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

from phantom_cases import cases_with  # (the test folder is on sys.path: pytest prepend import mode)
from test_raw_dataset import cases, read


def bone_with_two_lesions():
    """A 12^3 block of 200 HU bone holding a 2^3 cube of 600 HU and a one-voxel-thick 50 HU plane, apart."""
    hu = np.full((12, 12, 12), 200.0)
    mask = np.zeros(hu.shape, dtype=np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    hu[2:4, 2:4, 2:4] = 600.0
    mask[8, 1:11, 1:11] = 1
    hu[8, 1:11, 1:11] = 50.0
    return mask, hu


def test_a_dense_cube_and_a_lucent_plane_get_their_classes():
    mask, hu = bone_with_two_lesions()
    classes = polarity_classes(mask, hu)
    assert classes.dtype == np.uint8 and set(np.unique(classes)) == {0, DENSE, LUCENT}
    assert (classes[2:4, 2:4, 2:4] == DENSE).all() and (classes[8, 1:11, 1:11] == LUCENT).all()
    assert ((classes > 0) == (mask > 0)).all()


def test_the_shell_is_the_bone_around_not_the_other_lesion():
    """Two touching-diagonally voxels are one component (26-connectivity); a 1-voxel shell of a lesion in a corner
    is what the image holds there."""
    mask, hu = np.zeros((5, 5, 5), np.uint8), np.full((5, 5, 5), 100.0)
    mask[0, 0, 0] = mask[1, 1, 1] = 1
    hu[0, 0, 0] = hu[1, 1, 1] = 90.0  # just below the bone
    classes = polarity_classes(mask, hu, shell_voxels=1)
    assert classes[0, 0, 0] == classes[1, 1, 1] == LUCENT and (classes > 0).sum() == 2


def test_bad_arguments_are_refused():
    mask, hu = bone_with_two_lesions()
    with pytest.raises(ValueError, match=r"mask shape \(12, 12, 12\) and image shape \(12, 12, 11\)"):
        polarity_classes(mask, hu[..., :11])
    with pytest.raises(ValueError, match="shell_voxels must be an integer >= 1, got 0"):
        polarity_classes(mask, hu, shell_voxels=0)


def test_phantom_clefts_are_lucent_and_bands_dense():
    """On rendered phantom cases (blur and noise on) every cleft's mask is lucent and every band's dense."""
    for case in cases_with("cleft", 2) + cases_with("wedge", 1):
        ct = sitk.GetArrayFromImage(case.image).astype(float)
        instances = case.instances
        classes = polarity_classes(instances > 0, ct)
        for k, fracture in enumerate(case.fractures, start=1):
            want = LUCENT if fracture["type"] == "cleft" else DENSE
            assert (classes[instances == k] == want).all(), (case.case_id, fracture["type"])


def test_the_dataset_is_copied_with_split_labels(nnunet_env):
    source = write_raw_dataset(cases(), 501, "Tiny", weak="mask")
    raw = nnunet_env["nnUNet_raw"]
    out = write_polarity_dataset(source, 502, "TinyPolarity", raw)
    assert out == raw / "Dataset502_TinyPolarity"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in source.iterdir())
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "dense": 1, "lucent": 2}
    record = meta["nnunet_fracture"]["polarity_classes"]
    assert record["shell_voxels"] == 2 and record["source"] == str(source)
    for case in ("frac", "normal"):
        split, binary = read(out / "labelsTr" / f"{case}.nii.gz"), read(source / "labelsTr" / f"{case}.nii.gz")
        assert ((split > 0) == (binary > 0)).all()
        image = f"imagesTr/{case}_0000.nii.gz"
        assert (read(out / image) == read(source / image)).all()
    counted = read(out / "labelsTr" / "frac.nii.gz")
    assert record["dense"]["voxels"] == (counted == DENSE).sum()
    assert record["lucent"]["voxels"] == (counted == LUCENT).sum()
    with pytest.raises(FileExistsError):
        write_polarity_dataset(source, 502, "TinyPolarity", raw)


def test_a_dataset_without_binary_labels_is_refused_and_nothing_is_written(nnunet_env):
    source = write_raw_dataset(cases(), 501, "Tiny", weak="box")
    with pytest.raises(ValueError, match=r"Dataset501_Tiny/dataset.json: labels .*convert --weak mask"):
        write_polarity_dataset(source, 502, "TinyPolarity", nnunet_env["nnUNet_raw"])
    assert sorted(p.name for p in nnunet_env["nnUNet_raw"].iterdir()) == ["Dataset501_Tiny"]
