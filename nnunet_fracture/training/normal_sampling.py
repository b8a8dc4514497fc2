"""Patches of normal tissue only, for the VAE anomaly prior (phase 1).

:class:`NormalTissueDataLoader` is an ``nnUNetDataLoader`` whose every patch - the whole region it loads, which is
nnU-Net's enlarged initial patch during training, so rotation and scaling cannot pull anything else in - lies
``box_margin`` voxels (preprocessed grid) away from every labelled voxel. In a weak-box dataset the labels are the
boxes, in a mask dataset the fracture masks, so patches come from fracture-free cases and from fractured cases
far from any fracture. The check is exact, not sampled: at construction the loader reads every case's label map
once and keeps the bounding box of each connected labelled component (a box is its own bounding box; for masks
this is conservative), so a patch is accepted only if, grown by the margin, it misses all of them. Cases with no
such position are left out (and listed); if none is left, construction fails with the fix.

Patches prefer bone: with probability ``bone_fraction`` a patch is centred on a random voxel among the brightest
``1 - bone_quantile`` of the case's CT channel (vertebrae in a spine CT), so the VAE learns vertebrae rather than
air; the rest are uniform over the allowed positions. Where a centred patch is not allowed, up to ``max_draws``
others are tried, then an allowed position is picked from an exhaustive candidate set.

nnU-Net 2.8.1's ``generate_train_batch`` calls ``get_indices()`` once and then ``get_bbox`` once per selected case,
in order; the loader records the keys to know which case a ``get_bbox`` call is for (and fails loudly if that
order ever changes). Swap it into a trainer with :func:`nnunet_fracture.training.box_sampling.use_data_loader`.
"""
from __future__ import annotations

from typing import Union

import numpy as np
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from scipy import ndimage

from nnunet_fracture.training.box_sampling import use_data_loader

#: bright-voxel candidates kept per case
N_BRIGHT = 2000


class NoNormalTissueError(ValueError):
    """No training case has room for one patch kept ``box_margin`` voxels away from every labelled voxel."""


class _CaseInfo:
    """What the loader keeps per case: its shape, the labelled components' boxes and bright voxels."""

    def __init__(self, shape: tuple[int, ...], components: np.ndarray, bright: np.ndarray) -> None:
        self.shape, self.components, self.bright = shape, components, bright


def labelled_components(seg: np.ndarray) -> np.ndarray:
    """Inclusive index bounds ``(n, 2, dim)`` (``[:, 0]`` lower, ``[:, 1]`` upper) of the connected components of
    ``seg > 0`` (26-/8-connected)."""
    labelled, n = ndimage.label(seg > 0, structure=np.ones((3,) * seg.ndim, dtype=bool))
    if n == 0:
        return np.zeros((0, 2, seg.ndim), dtype=np.int64)
    return np.array([[[s.start for s in sl], [s.stop - 1 for s in sl]] for sl in ndimage.find_objects(labelled)],
                    dtype=np.int64)


def corner_range(shape: tuple[int, ...], patch: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Allowed lower corners ``[lo, hi]`` (inclusive) per axis: the patch inside the image where it fits, else
    centred (padded on both sides)."""
    shape, patch = np.asarray(shape), np.asarray(patch)
    lo = np.where(shape >= patch, 0, (shape - patch) // 2)
    hi = np.where(shape >= patch, shape - patch, lo)
    return lo, hi


def forbidden_corners(components: np.ndarray, patch: tuple[int, ...], margin: int) -> np.ndarray:
    """Per component, the inclusive box ``(n, 2, dim)`` of lower corners whose patch, grown by ``margin``, touches
    it: ``[a - patch - margin + 1, b + margin]`` for a component spanning ``[a, b]``."""
    patch = np.asarray(patch)
    out = components.copy()
    out[:, 0] = components[:, 0] - patch - margin + 1
    out[:, 1] = components[:, 1] + margin
    return out


def allowed(corner: np.ndarray, forbidden: np.ndarray) -> bool:
    """Whether ``corner`` lies outside every forbidden box."""
    if len(forbidden) == 0:
        return True
    inside = np.all((corner >= forbidden[:, 0]) & (corner <= forbidden[:, 1]), axis=1)
    return not bool(inside.any())


def allowed_corners(shape: tuple[int, ...], patch: tuple[int, ...], components: np.ndarray,
                    margin: int) -> np.ndarray:
    """Every allowed lower corner among a candidate set that holds one whenever any exists (``(m, dim)``, possibly
    empty): per axis the range ends and, for each forbidden box ``[f0, f1]``, ``f0 - 1, f0, f1, f1 + 1`` - the
    ends of the intervals on which membership in the forbidden boxes is constant."""
    lo, hi = corner_range(shape, patch)
    forbidden = forbidden_corners(components, patch, margin)
    axes = []
    for d in range(len(shape)):
        values = {int(lo[d]), int(hi[d])}
        for offset, side in ((-1, 0), (0, 0), (0, 1), (1, 1)):
            values.update(int(v) + offset for v in forbidden[:, side, d])
        axes.append(np.array(sorted(v for v in values if lo[d] <= v <= hi[d]), dtype=np.int64))
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(shape))
    ok = np.ones(len(grid), dtype=bool)
    for f0, f1 in forbidden:
        ok &= ~np.all((grid >= f0) & (grid <= f1), axis=1)
    return grid[ok]


class NormalTissueDataLoader(nnUNetDataLoader):
    """``nnUNetDataLoader`` drawing only patches that keep ``box_margin`` voxels away from every labelled voxel
    (see the module docstring).

    Args (besides nnU-Net's):
        box_margin: voxels (preprocessed grid) between a patch and any labelled voxel, >= 0.
        bone_fraction: share of patches centred on bright (bone) voxels, in [0, 1].
        bone_quantile: a voxel is bright when its CT value is at least this quantile of its case, in [0, 1).
        max_draws: random positions tried before the exhaustive search, >= 1.
        strict: when no case has room, raise (training) instead of falling back to nnU-Net's own sampling and
            setting ``fallback`` (online validation, which only measures).

    Raises:
        ValueError: an argument out of range.
        NoNormalTissueError: ``strict`` and no case has room for a normal patch.
    """

    def __init__(self, *args, box_margin: int = 8, bone_fraction: float = 0.75, bone_quantile: float = 0.9,
                 max_draws: int = 20, strict: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(box_margin, bool) or not isinstance(box_margin, (int, np.integer)) or box_margin < 0:
            raise ValueError(f"box_margin must be a whole number of voxels >= 0, got {box_margin!r}")
        if not 0 <= bone_fraction <= 1:
            raise ValueError(f"bone_fraction must be in [0, 1], got {bone_fraction!r}")
        if not 0 <= bone_quantile < 1:
            raise ValueError(f"bone_quantile must be in [0, 1), got {bone_quantile!r}")
        if max_draws < 1:
            raise ValueError(f"max_draws must be >= 1, got {max_draws!r}")
        self.box_margin, self.bone_fraction = int(box_margin), float(bone_fraction)
        self.bone_quantile, self.max_draws = float(bone_quantile), int(max_draws)
        self.cases: dict[str, _CaseInfo] = {}
        self.excluded: list[str] = []
        self._pending: list[str] = []
        self.fallback = False
        patch = tuple(int(p) for p in self.patch_size)
        rng = np.random.default_rng(0)
        for key in list(self.indices):
            data, seg, _, _ = self._data.load_case(key)
            seg = np.asarray(seg[0])
            components = labelled_components(seg)
            if len(allowed_corners(seg.shape, patch, components, self.box_margin)) == 0:
                self.excluded.append(key)
                continue
            self.cases[key] = _CaseInfo(seg.shape, components, self._bright_voxels(np.asarray(data[0]), rng))
        if not self.cases and not strict:
            self.fallback = True
            return
        if not self.cases:
            raise NoNormalTissueError(
                f"no training case has room for a {'x'.join(map(str, patch))} patch kept {self.box_margin} voxels "
                f"away from every box/fracture voxel ({len(self.excluded)} case(s) checked). Fix: add fracture-free "
                f"cases, lower the margin (NNUNET_FRACTURE_SETTINGS='vae_box_margin=2') or use smaller patches "
                f"(nnunet-fracture tiny-plans --patch).")
        self.indices = sorted(self.cases)

    def _bright_voxels(self, ct: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flat = ct.ravel()
        sample = flat if flat.size <= 200_000 else flat[rng.integers(0, flat.size, 200_000)]
        threshold = np.quantile(sample, self.bone_quantile)
        bright = np.argwhere(ct >= threshold)
        if len(bright) > N_BRIGHT:
            bright = bright[rng.choice(len(bright), N_BRIGHT, replace=False)]
        return bright.astype(np.int64)

    def get_indices(self):
        keys = super().get_indices()
        self._pending = list(keys)
        return keys

    def get_bbox(self, data_shape: np.ndarray, force_fg: bool, class_locations: Union[dict, None],
                 overwrite_class=None, verbose: bool = False):
        if not self._pending:
            raise RuntimeError("NormalTissueDataLoader.get_bbox was called without a pending case from get_indices; "
                               "nnU-Net's data loader no longer calls them in the order this loader relies on")
        key = self._pending.pop(0)
        if self.fallback:
            return super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)
        info = self.cases[key]
        if tuple(int(s) for s in data_shape) != tuple(info.shape):
            raise RuntimeError(f"case {key}: data shape {tuple(data_shape)} differs from its label map's "
                               f"{info.shape}")
        lower = self.normal_corner(info)
        return [int(v) for v in lower], [int(v) + int(p) for v, p in zip(lower, self.patch_size)]

    def normal_corner(self, info: _CaseInfo) -> np.ndarray:
        """A random allowed lower corner for the case ``info`` (see the module docstring)."""
        patch = tuple(int(p) for p in self.patch_size)
        lo, hi = corner_range(info.shape, patch)
        forbidden = forbidden_corners(info.components, patch, self.box_margin)
        if len(info.bright) and np.random.uniform() < self.bone_fraction:
            for _ in range(self.max_draws):
                centre = info.bright[np.random.randint(len(info.bright))]
                corner = np.clip(centre - np.asarray(patch) // 2, lo, hi)
                if allowed(corner, forbidden):
                    return corner
        for _ in range(self.max_draws):
            corner = np.array([np.random.randint(a, b + 1) for a, b in zip(lo, hi)])
            if allowed(corner, forbidden):
                return corner
        candidates = allowed_corners(info.shape, patch, info.components, self.box_margin)
        return candidates[np.random.randint(len(candidates))]


def check_normal_batch(batch: dict) -> None:
    """Refuse a training batch whose labels show a box / fracture voxel (checked on the CPU tensor, no device
    sync): the normal-tissue sampler must never let one through."""
    target = batch["target"][0] if isinstance(batch["target"], (list, tuple)) else batch["target"]
    if bool((target > 0).any()):
        raise RuntimeError(f"a VAE training batch holds box/fracture voxels (cases {list(batch['keys'])}); the "
                           f"normal-tissue sampler must prevent this. Please report it.")


class NormalLoaderFactory:
    """What :func:`~nnunet_fracture.training.box_sampling.use_data_loader` swaps in for the VAE trainer: nnU-Net
    builds the training loader first (strict: every case must offer a normal patch or is left out and listed), then
    the validation loader (which falls back to patches anywhere when no case has room: it only measures).

    Args:
        box_margin, bone_fraction, bone_quantile: see :class:`NormalTissueDataLoader`.
    """

    def __init__(self, box_margin: int, bone_fraction: float, bone_quantile: float) -> None:
        self.options = dict(box_margin=box_margin, bone_fraction=bone_fraction, bone_quantile=bone_quantile)
        self.loaders: list[NormalTissueDataLoader] = []

    def __call__(self, *args, **kwargs) -> NormalTissueDataLoader:
        loader = NormalTissueDataLoader(*args, strict=not self.loaders, **self.options, **kwargs)
        self.loaders.append(loader)
        return loader

    def notes(self) -> list[str]:
        """Log lines: training cases left out, and the validation fallback."""
        notes = []
        train, val = self.loaders
        if train.excluded:
            notes.append(f"VAE: {len(train.excluded)} training case(s) have no room for a normal patch and are left "
                         f"out: {', '.join(train.excluded)}")
        if val.fallback:
            notes.append("VAE: no validation case has room for a normal patch; online validation samples patches "
                         "anywhere (it only measures; training stays on normal tissue)")
        return notes


class NormalPatchBatches:
    """Trainer mixin of the VAE trainer: patches only from normal tissue (:class:`NormalLoaderFactory` with the
    trainer's ``vae_box_margin``, ``vae_bone_fraction`` and ``vae_bone_quantile``, its notes in the training log),
    with no rotation and the loaded patch the network's patch: nnU-Net otherwise loads an enlarged patch for
    rotation, which would have to be kept clear of boxes too (and rarely fits beside a fracture). Scaling and
    mirroring stay; zooming out pads with zeros instead of showing unchecked voxels."""

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        _, do_dummy_2d, _, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return (0.0, 0.0), do_dummy_2d, list(self.configuration_manager.patch_size), mirror_axes

    def get_dataloaders(self):
        factory = NormalLoaderFactory(self.vae_box_margin, self.vae_bone_fraction, self.vae_bone_quantile)
        with use_data_loader(factory):
            generators = super().get_dataloaders()
        for note in factory.notes():
            self.print_to_log_file(note)
        return generators
