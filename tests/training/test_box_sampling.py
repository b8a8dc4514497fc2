import numpy as np
import pytest

import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module
from nnunet_fracture.training.box_sampling import BoxAwareDataLoader, BoxNumberBatches, touches, use_data_loader


def test_touches_uses_half_open_patch_grown_by_margin():
    points = np.array([[10, 10, 10]])
    assert touches(points, ([0, 0, 0], [11, 11, 11]), 0)
    assert not touches(points, ([0, 0, 0], [10, 10, 10]), 0)  # upper bound is exclusive
    assert touches(points, ([0, 0, 0], [10, 10, 10]), 1)
    assert not touches(points, ([12, 0, 0], [20, 20, 20]), 1)
    assert touches(points, ([12, 0, 0], [20, 20, 20]), 2)


class _Loader(BoxAwareDataLoader):
    """Only what get_bbox needs: nnU-Net's draw replaced by a scripted sequence of patches."""

    def __init__(self, draws, margin, max_redraws=10):
        self.negative_margin, self.max_redraws = margin, max_redraws
        self._draws = list(draws)
        self.calls = 0

    def _next(self, *args, **kwargs):
        self.calls += 1
        lo = self._draws.pop(0)
        return lo, [v + 4 for v in lo]


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr(trainer_module.nnUNetDataLoader, "get_bbox", lambda self, *a, **k: self._next())
    return _Loader


def test_negative_patches_are_redrawn_away_from_boxes(scripted):
    box_voxels = {(1, 2): np.array([[0, 10, 10, 10], [0, 11, 10, 10]])}
    loader = scripted([[8, 8, 8], [5, 5, 5], [20, 20, 20]], margin=2)
    # first draw contains the box, the second ends 2 voxels short of it (within the margin), the third is far
    assert loader.get_bbox(np.array([30, 30, 30]), False, box_voxels) == ([20, 20, 20], [24, 24, 24])
    assert loader.calls == 3


def test_foreground_patches_and_box_free_cases_are_not_redrawn(scripted):
    box_voxels = {(1, 2): np.array([[0, 10, 10, 10]])}
    loader = scripted([[8, 8, 8]], margin=2)
    assert loader.get_bbox(np.array([30, 30, 30]), True, box_voxels)[0] == [8, 8, 8] and loader.calls == 1
    loader = scripted([[8, 8, 8]], margin=2)
    assert loader.get_bbox(np.array([30, 30, 30]), False, {(1, 2): np.zeros((0, 4))})[0] == [8, 8, 8]


def test_gives_up_after_max_redraws(scripted):
    box_voxels = {(1, 2): np.array([[0, 10, 10, 10]])}
    loader = scripted([[8, 8, 8]] * 5, margin=0, max_redraws=3)
    loader.negative_margin = 1
    assert loader.get_bbox(np.array([30, 30, 30]), False, box_voxels)[0] == [8, 8, 8] and loader.calls == 3


def test_use_data_loader_swaps_and_restores():
    original = trainer_module.nnUNetDataLoader
    with use_data_loader(BoxAwareDataLoader):
        assert trainer_module.nnUNetDataLoader is BoxAwareDataLoader
    assert trainer_module.nnUNetDataLoader is original
    with pytest.raises(KeyError), use_data_loader(BoxAwareDataLoader):
        raise KeyError
    assert trainer_module.nnUNetDataLoader is original


class _Base:
    def get_dataloaders(self):
        return trainer_module.nnUNetDataLoader  # what nnU-Net's get_dataloaders would build its loaders with


class _Trainer(BoxNumberBatches, _Base):
    negative_margin = 5


def test_box_number_batches_keep_box_numbers_through_nnunets_transforms(monkeypatch):
    seen = {}

    def stock(*args, **kwargs):
        seen.update(kwargs)
        return "transforms"

    for name in ("get_training_transforms", "get_validation_transforms"):
        seen.clear()
        monkeypatch.setattr(trainer_module.nnUNetTrainer, name, staticmethod(stock))
        assert getattr(_Trainer, name)(deep_supervision_scales=None, regions=[(1, 2, 3)]) == "transforms"
        assert seen == {"deep_supervision_scales": None, "regions": None}  # one label per box, not one region


def test_box_number_batches_draw_with_the_box_aware_loader_and_the_trainers_margin():
    factory = _Trainer().get_dataloaders()
    assert factory.func is BoxAwareDataLoader and factory.keywords == {"negative_margin": 5}
    assert trainer_module.nnUNetDataLoader is not BoxAwareDataLoader  # swapped back after the call
