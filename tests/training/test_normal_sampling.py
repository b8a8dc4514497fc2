"""Normal-tissue sampling for the VAE: no box voxel (nor one within the margin) ever reaches it."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest


from nnunet_fracture.training.normal_sampling import (NoNormalTissueError, NormalTissueDataLoader, allowed,
                                                      allowed_corners, forbidden_corners, labelled_components)
from weak_box_tiny_dataset import install_weak


def test_components_are_inclusive_bounds():
    seg = np.zeros((6, 6), dtype=np.int16)
    seg[1:3, 2:4] = 1
    seg[5, 5] = 2
    assert labelled_components(seg).tolist() == [[[1, 2], [2, 3]], [[5, 5], [5, 5]]]
    assert labelled_components(np.zeros((3, 3))).shape == (0, 2, 2)


def test_one_dimensional_by_hand():
    component = np.array([[[4], [5]]])  # voxels 4..5 of a 10-voxel line, patch 4
    # margin 0: a corner c touches it when c + 4 > 4 and c <= 5, i.e. c in 1..5; allowed corners 0 and 6
    assert forbidden_corners(component, (4,), 0).tolist() == [[[1], [5]]]
    assert sorted(allowed_corners((10,), (4,), component, 0)[:, 0].tolist()) == [0, 6]
    # margin 1: c in 0..6 touches it; nothing is left
    assert len(allowed_corners((10,), (4,), component, 1)) == 0


def brute_force(shape, patch, components, margin):
    lo = [0] * len(shape)
    hi = [s - p for s, p in zip(shape, patch)]
    found = []
    for corner in itertools.product(*[range(a, b + 1) for a, b in zip(lo, hi)]):
        grown_lo = np.array(corner) - margin
        grown_hi = np.array(corner) + np.array(patch) + margin - 1
        if all(np.any((grown_hi < c[0]) | (grown_lo > c[1])) for c in components):
            found.append(corner)
    return found


@pytest.mark.parametrize("seed", range(25))
def test_exhaustive_candidates_find_a_corner_whenever_one_exists(seed):
    rng = np.random.default_rng(seed)
    shape, patch, margin = (12, 12, 10), (4, 5, 3), int(rng.integers(0, 3))
    lows = rng.integers(0, 10, size=(int(rng.integers(1, 6)), 3))
    components = np.stack([lows, np.minimum(lows + rng.integers(0, 4, size=lows.shape), 9)], axis=1)
    truth = brute_force(shape, patch, components, margin)
    found = allowed_corners(shape, patch, components, margin)
    assert (len(found) > 0) == (len(truth) > 0)
    assert {tuple(c) for c in found} <= set(truth)


def _dataset(weak_dataset_cache, nnunet_env):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    name = install_weak(weak_dataset_cache("box"), "box", nnunet_env)
    base = nnunet_env["nnUNet_preprocessed"] / name
    plans = PlansManager(json.loads((base / "nnUNetPlans.json").read_text(encoding="utf-8")))
    folder = base / plans.get_configuration("3d_fullres").data_identifier
    labels = plans.get_label_manager(json.loads((base / "dataset.json").read_text(encoding="utf-8")))
    return infer_dataset_class(str(folder))(str(folder)), labels


def test_no_box_voxel_within_the_margin_of_any_patch(weak_dataset_cache, nnunet_env):
    dataset, labels = _dataset(weak_dataset_cache, nnunet_env)
    margin, patch = 1, (6, 6, 6)
    loader = NormalTissueDataLoader(dataset, 4, patch, patch, labels, box_margin=margin, bone_fraction=0.5)
    segs = {k: np.asarray(dataset.load_case(k)[1][0]) for k in dataset.identifiers}
    assert any((s > 0).any() for k, s in segs.items() if k in loader.indices)  # fractured cases take part
    np.random.seed(0)
    drawn = 0
    for _ in range(30):
        batch = loader.generate_train_batch()
        assert not bool((batch["target"] > 0).any())  # what reaches the network
        assert batch["data"].shape == (4, 1, *patch)
        for key in batch["keys"]:
            drawn += 1
    assert drawn == 120
    # the loaded region itself, grown by the margin, against the full label maps
    for _ in range(200):
        key = loader.get_indices()[0]
        loader._pending = [key]
        lbs, ubs = loader.get_bbox(np.array(segs[key].shape), False, None)
        region = tuple(slice(max(0, a - margin), max(0, b + margin)) for a, b in zip(lbs, ubs))
        assert not (segs[key][region] > 0).any(), (key, lbs)


def test_fails_with_the_fix_when_no_case_has_room(weak_dataset_cache, nnunet_env):
    dataset, labels = _dataset(weak_dataset_cache, nnunet_env)
    fractured = [k for k in dataset.identifiers if (np.asarray(dataset.load_case(k)[1][0]) > 0).any()]
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    only_fractured = infer_dataset_class(dataset.source_folder)(dataset.source_folder, fractured)
    with pytest.raises(NoNormalTissueError, match="vae_box_margin"):
        NormalTissueDataLoader(only_fractured, 2, (20, 20, 20), (20, 20, 20), labels, box_margin=4)


def test_argument_checks(weak_dataset_cache, nnunet_env):
    dataset, labels = _dataset(weak_dataset_cache, nnunet_env)
    for kwargs, message in (({"box_margin": -1}, "box_margin"), ({"bone_fraction": 2.0}, "bone_fraction"),
                            ({"bone_quantile": 1.0}, "bone_quantile")):
        with pytest.raises(ValueError, match=message):
            NormalTissueDataLoader(dataset, 2, (8, 8, 8), (8, 8, 8), labels, **kwargs)


def test_allowed_is_strict_on_both_ends():
    forbidden = np.array([[[2, 2], [4, 4]]])
    assert not allowed(np.array([2, 4]), forbidden)
    assert allowed(np.array([1, 3]), forbidden) and allowed(np.array([3, 5]), forbidden)
    assert allowed(np.array([3, 3]), np.zeros((0, 2, 2), dtype=np.int64))



def test_normal_patch_batches_load_the_networks_patch_unrotated_from_normal_tissue():
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module
    from types import SimpleNamespace

    from nnunet_fracture.training.normal_sampling import NormalLoaderFactory, NormalPatchBatches

    class Stock:
        def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
            return ((-3.1, 3.1),) * 3, False, [60, 60, 60], (0, 1, 2)

        def get_dataloaders(self):  # nnU-Net builds a training and a validation loader with the swapped-in name
            factory = trainer_module.nnUNetDataLoader
            factory.loaders = [SimpleNamespace(excluded=["c7"], fallback=False), SimpleNamespace(fallback=False)]
            return factory

    class Trainer(NormalPatchBatches, Stock):
        vae_box_margin, vae_bone_fraction, vae_bone_quantile = 6, 0.5, 0.8
        configuration_manager = SimpleNamespace(patch_size=(32, 24, 16))

        def print_to_log_file(self, line):
            self.lines.append(line)

    trainer = Trainer()
    trainer.lines = []
    assert trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size() == (
        (0.0, 0.0), False, [32, 24, 16], (0, 1, 2))
    factory = trainer.get_dataloaders()
    assert isinstance(factory, NormalLoaderFactory) and trainer_module.nnUNetDataLoader is not factory
    assert factory.options == {"box_margin": 6, "bone_fraction": 0.5, "bone_quantile": 0.8}
    [note] = trainer.lines
    assert "1 training case(s) have no room for a normal patch and are left out: c7" in note
