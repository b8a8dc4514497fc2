"""Patch sampling for weak-box training: patches centred in boxes, and negatives kept away from boxes.

nnU-Net's ``nnUNetDataLoader`` already centres a share of each batch (``oversample_foreground_percent``) on a
random foreground voxel; for a box dataset that is a random voxel inside some box. The remaining patches are
drawn uniformly, so in a fractured case they often graze a box. :class:`BoxAwareDataLoader` redraws such
negative patches (up to ``max_redraws`` times) until the patch, grown by ``negative_margin`` voxels on every
side, contains no box voxel - negatives then come from fracture-free cases and from anatomy far from every
fracture. Box voxels are known from nnU-Net's ``class_locations`` (a sample of each region's voxels taken at
preprocessing), so no extra file is read.

nnU-Net 2.8.1's ``get_dataloaders`` builds its loaders by the module-level name ``nnUNetDataLoader``;
:func:`use_data_loader` swaps that name for the duration of one call instead of copying the method.
:class:`BoxNumberBatches` is the trainer mixin that uses both, and keeps each box's own number in the batches.
"""
from __future__ import annotations

import contextlib
from functools import partial
from typing import Callable, Iterator, Union

import numpy as np
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as _trainer_module


class BoxAwareDataLoader(nnUNetDataLoader):
    """``nnUNetDataLoader`` whose negative (not foreground-forced) patches keep ``negative_margin`` voxels away
    from every box voxel, when the case allows it within ``max_redraws`` draws."""

    def __init__(self, *args, negative_margin: int = 8, max_redraws: int = 10, **kwargs):
        super().__init__(*args, **kwargs)
        if negative_margin < 0:
            raise ValueError(f"negative_margin must be >= 0 voxels, got {negative_margin}")
        if max_redraws < 1:
            raise ValueError(f"max_redraws must be >= 1, got {max_redraws}")
        self.negative_margin = int(negative_margin)
        self.max_redraws = int(max_redraws)

    def get_bbox(self, data_shape: np.ndarray, force_fg: bool, class_locations: Union[dict, None],
                 overwrite_class=None, verbose: bool = False):
        bbox = super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)
        if force_fg or self.negative_margin == 0 or not class_locations:
            return bbox
        located = [np.asarray(v) for v in class_locations.values() if v is not None and len(v)]
        if not located:
            return bbox  # a fracture-free case: every patch is a negative
        boxes = np.concatenate(located)[:, 1:]  # drop the channel column
        for _ in range(self.max_redraws - 1):
            if not touches(boxes, bbox, self.negative_margin):
                break
            bbox = super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)
        return bbox


def touches(points: np.ndarray, bbox: tuple, margin: int) -> bool:
    """Whether any of ``points`` (N, dim) lies in the half-open box ``[lbs, ubs)`` grown by ``margin``."""
    lbs, ubs = (np.asarray(b) for b in bbox)
    inside = np.all((points >= lbs - margin) & (points < ubs + margin), axis=1)
    return bool(inside.any())


@contextlib.contextmanager
def use_data_loader(factory: Callable[..., nnUNetDataLoader]) -> Iterator[None]:
    """Make nnU-Net's trainer module build its data loaders with ``factory`` inside the ``with`` block."""
    original = _trainer_module.nnUNetDataLoader
    _trainer_module.nnUNetDataLoader = factory
    try:
        yield
    finally:
        _trainer_module.nnUNetDataLoader = original


class BoxNumberBatches:
    """Trainer mixin for box (or slice-range) datasets: batches keep each box's number - nnU-Net's transforms would
    merge the numbers into the one "fracture" region, and every box is a bag of its own - and are drawn by
    :class:`BoxAwareDataLoader` with the trainer's ``negative_margin``."""

    @staticmethod
    def get_training_transforms(*args, **kwargs):
        kwargs["regions"] = None
        return _trainer_module.nnUNetTrainer.get_training_transforms(*args, **kwargs)

    @staticmethod
    def get_validation_transforms(*args, **kwargs):
        kwargs["regions"] = None
        return _trainer_module.nnUNetTrainer.get_validation_transforms(*args, **kwargs)

    def get_dataloaders(self):
        with use_data_loader(partial(BoxAwareDataLoader, negative_margin=self.negative_margin)):
            return super().get_dataloaders()
