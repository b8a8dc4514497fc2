"""training.weak_dataset: which datasets a weak-label trainer accepts, on stand-in label managers."""
from types import SimpleNamespace

import pytest

from nnunet_fracture.training.weak_dataset import check_weak_dataset

BOXES = SimpleNamespace(has_regions=True, foreground_regions=[(1, 2)])


def test_box_dataset_accepted_and_missing_provenance_noted():
    assert check_weak_dataset(BOXES, {"nnunet_fracture": {"weak": "box"}}, "T", ("box",)) is None
    note = check_weak_dataset(BOXES, {}, "T", ("box",))
    assert note == "T: dataset.json has no nnunet_fracture provenance; treating its label values as box numbers"


def test_masks_and_the_other_weak_mode_refused_with_the_fix():
    masks = SimpleNamespace(has_regions=False, foreground_regions=None)
    with pytest.raises(RuntimeError, match=r"T needs a weak-box dataset.*declares \{'fracture': 1\}.*--weak box"):
        check_weak_dataset(masks, {"labels": {"fracture": 1}}, "T", ("box",))
    with pytest.raises(RuntimeError, match="written with --weak slice. Fix: use nnUNetTrainerWeakSlice"):
        check_weak_dataset(BOXES, {"nnunet_fracture": {"weak": "slice"}}, "T", ("box",))
