"""Pictures of augmented training batches, taken from the trainer exactly as ``nnUNetv2_train`` builds it.

The trainer class is looked up by nnU-Net's own helper (``nnunetv2.run.run_training.get_trainer_from_args``,
which also searches ``nnUNet_extTrainer``), built on the CPU, ``initialize()``-d, and asked for its
``get_dataloaders()``; the batches drawn are what ``train_step`` would receive. Each picture shows, per sample,
the image (first input channel) through the foreground's centre along every patch axis, with the full-resolution
target drawn over it: one colour per label value (box numbers of a weak-box dataset show as different colours)
or, for region targets, per region channel (the ignore channel last when the dataset has an ignore label).
Images and labels that do not line up after augmentation show at a glance.

Axes are those of the preprocessed patch (nnU-Net's ``transpose_forward`` applied), so they are named by number;
pixels have the configuration's spacing.

Building a trainer writes a log file into its output folder; that happens in a scratch ``nnUNet_results``,
removed afterwards, so the real results folder is left alone (a cascade stage still reads the previous stage's
predictions from the real one).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from nnunet_fracture.visualization.overlay_layers import new_figure, save_figure

MAX_SAMPLES_SHOWN = 8
"""At most this many samples of a batch are drawn (2D configurations have large batches)."""
LABEL_COLOURS = colormaps["tab10"].colors
IGNORE_COLOUR = (0.6, 0.6, 0.6)


@dataclass
class TrainingBatch:
    """One batch as numpy: ``data`` (b, c, *patch), ``target`` (b, c_t, *patch) at full resolution, ``keys``."""

    data: np.ndarray
    target: np.ndarray
    keys: list[str]


@dataclass(frozen=True)
class TargetLayer:
    """One thing drawn from a target: its legend name, colour and binary mask (*patch)."""

    name: str
    colour: tuple
    mask: np.ndarray


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_training_batch(batch: dict) -> TrainingBatch:
    """Convert a batch of nnU-Net's data loader (``target`` a list when deep supervision is on: the first,
    full-resolution entry is kept)."""
    target = batch["target"]
    if isinstance(target, (list, tuple)):
        target = target[0]
    data, target = _numpy(batch["data"]), _numpy(target)
    if data.shape[0] != target.shape[0] or data.shape[2:] != target.shape[2:]:
        raise ValueError(f"batch data {data.shape} and full-resolution target {target.shape} do not match")
    return TrainingBatch(data, target, [str(k) for k in batch.get("keys", [""] * data.shape[0])])


def target_layers(target: np.ndarray, regions: bool = False, ignore_label: Optional[int] = None) -> list[TargetLayer]:
    """The layers of one sample's target (c_t, *patch): a one-channel target is a label map (one layer per value
    > 0); several channels are regions (one layer per channel), the last one the ignore mask when ``regions`` and
    ``ignore_label`` say so."""
    layers = []
    if target.shape[0] == 1:
        labels = target[0]
        for value in np.unique(labels):
            value = int(value)
            if value <= 0:
                continue
            if ignore_label is not None and value == ignore_label:
                layers.append(TargetLayer(f"ignore ({value})", IGNORE_COLOUR, labels == value))
            else:
                layers.append(TargetLayer(f"label {value}", LABEL_COLOURS[(value - 1) % len(LABEL_COLOURS)],
                                          labels == value))
        return layers
    n = target.shape[0]
    for channel in range(n):
        mask = target[channel] > 0
        if regions and ignore_label is not None and channel == n - 1:
            layers.append(TargetLayer("ignore", IGNORE_COLOUR, mask))
        elif mask.any():
            layers.append(TargetLayer(f"region {channel + 1}", LABEL_COLOURS[channel % len(LABEL_COLOURS)], mask))
    return layers


def _focus(layers: list[TargetLayer], shape: tuple[int, ...]) -> tuple[tuple[int, ...], bool]:
    """Centre of the (non-ignore) foreground, or of the patch when there is none; and whether foreground."""
    masks = [layer.mask for layer in layers if not layer.name.startswith("ignore")]
    if masks:
        foreground = np.logical_or.reduce(masks)
        if foreground.any():
            return tuple(int(round(c)) for c in np.argwhere(foreground).mean(axis=0)), True
    return tuple(s // 2 for s in shape), False


def batch_figure(batch: TrainingBatch, spacing: Optional[tuple[float, ...]], title: str,
                 regions: bool = False, ignore_label: Optional[int] = None) -> Figure:
    """Rows: samples; columns: a plane across every patch axis through the foreground's centre."""
    n_show = min(batch.data.shape[0], MAX_SAMPLES_SHOWN)
    spatial = batch.data.shape[2:]
    ndim = len(spatial)
    spacing = tuple(spacing[-ndim:]) if spacing is not None and len(spacing) >= ndim else (1.0,) * ndim
    n_cols = 3 if ndim == 3 else 1
    fig = new_figure(4.2 * n_cols + 1.5, 4.0 * n_show + 0.8)
    axes = np.atleast_2d(fig.subplots(n_show, n_cols, squeeze=False))
    legend: dict[str, tuple] = {}
    for row in range(n_show):
        image = batch.data[row, 0]
        layers = target_layers(batch.target[row], regions, ignore_label)
        for layer in layers:
            legend.setdefault(layer.name, layer.colour)
        point, has_foreground = _focus(layers, spatial)
        low, high = np.percentile(image, [0.5, 99.5])
        for col in range(n_cols):
            ax = axes[row, col]
            if ndim == 3:
                axis = col
                cut = np.s_[tuple(point[a] if a == axis else slice(None) for a in range(3))]
                rest = [a for a in range(3) if a != axis]
            else:
                axis, cut, rest = None, np.s_[...], [0, 1]
            aspect = spacing[rest[0]] / spacing[rest[1]]
            ax.imshow(image[cut], cmap="gray", vmin=low, vmax=max(high, low + 1e-6), aspect=aspect,
                      interpolation="nearest")
            for layer in layers:
                mask = layer.mask[cut]
                if not mask.any():
                    continue
                ax.imshow(np.ma.masked_where(~mask, np.ones(mask.shape)), cmap=ListedColormap([layer.colour]),
                          vmin=0, vmax=1, alpha=0.35, aspect=aspect, interpolation="nearest")
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=[layer.colour], linewidths=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            where = "foreground centre" if has_foreground else "patch centre (no foreground)"
            plane = f"axis {axis} = {point[axis]}" if axis is not None else "2D patch"
            ax.set_title(f"{batch.keys[row] if row < len(batch.keys) else ''}: {plane}\n({where})", fontsize=8)
    handles = [Patch(facecolor=c, edgecolor=c, label=name) for name, c in sorted(legend.items())]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8)
    shown = f"{n_show} of {batch.data.shape[0]} samples" if n_show < batch.data.shape[0] else f"{n_show} samples"
    fig.suptitle(f"{title}\n{shown}, patch {tuple(int(s) for s in spatial)}, image channel 0 of "
                 f"{batch.data.shape[1]}, target at full resolution", fontsize=10)
    return fig


@contextlib.contextmanager
def scratch_results() -> Iterator[Path]:
    """Point ``nnUNet_results`` at a temporary folder for the block (restored afterwards)."""
    from nnunet_fracture.environment import scoped_environ

    with tempfile.TemporaryDirectory(prefix="nnunet_fracture_batches_") as tmp, \
            scoped_environ({"nnUNet_results": tmp}):
        yield Path(tmp)


def build_trainer(dataset: str, configuration: str, trainer: str, plans: str, fold: Union[int, str]):
    """The trainer ``nnUNetv2_train DATASET CONFIGURATION FOLD -tr TRAINER -p PLANS -device cpu`` would build
    (not yet initialised). Call inside :func:`scratch_results`.

    Raises:
        FileNotFoundError: the plans file is missing (with the command that makes it).
        RuntimeError: the trainer class is not found (with the ``nnUNet_extTrainer`` fix where it applies).
    """
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunet_fracture.environment import ext_trainer_problem
    from nnunet_fracture.io.plans_files import plans_file

    plans_file(dataset, plans, f"run nnUNetv2_plan_and_preprocess -d {dataset} (nnUNetPlans), or nnunet-fracture "
                               f"tiny-plans {dataset} (nnUNetPlansTiny)")
    if str(fold) != "all" and not str(fold).isdigit():
        raise ValueError(f"fold must be a fold number (0-4 with nnU-Net's default split) or 'all', got {fold!r}")
    fold_value: Union[int, str] = "all" if str(fold) == "all" else int(fold)
    try:
        return get_trainer_from_args(str(dataset), configuration, fold_value, trainer, plans,
                                     device=torch.device("cpu"))
    except RuntimeError as e:
        problem = ext_trainer_problem() if "Could not find requested nnunet trainer" in str(e) else None
        raise RuntimeError(f"{e}\n{problem}" if problem else str(e)) from e


def sample_batches(nnunet_trainer, n_batches: int) -> list[TrainingBatch]:
    """``initialize()`` the trainer, take ``n_batches`` batches from its training data loader, stop its workers."""
    from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
    from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter

    if n_batches < 1:
        raise ValueError(f"number of batches must be at least 1, got {n_batches}")
    nnunet_trainer.initialize()
    loaders = nnunet_trainer.get_dataloaders()
    try:
        return [to_training_batch(next(loaders[0])) for _ in range(n_batches)]
    finally:
        for loader in loaders:  # the same clean-up as nnUNetTrainer.on_train_end
            if isinstance(loader, (NonDetMultiThreadedAugmenter, MultiThreadedAugmenter)):
                loader._finish()


def visualize_training_batches(dataset: str, configuration: str, trainer: str, plans: str,
                               fold: Union[int, str], out: Path, n_batches: int = 3) -> list[Path]:
    """Write ``out/training_batches/batch_<n>.png`` for ``n_batches`` augmented training batches.

    Returns:
        The written PNG files.
    """
    if n_batches < 1:
        raise ValueError(f"number of batches must be at least 1, got {n_batches}")
    out = Path(out)
    real_results = os.environ.get("nnUNet_results")
    with scratch_results() as scratch:
        nnunet_trainer = build_trainer(dataset, configuration, trainer, plans, fold)
        if nnunet_trainer.is_cascaded:  # the previous stage's predictions live in the real results folder
            if not real_results:
                raise RuntimeError(f"configuration {configuration} is a cascade stage: its inputs include the "
                                   f"previous stage's predictions in nnUNet_results. Fix: export nnUNet_results.")
            relative = Path(nnunet_trainer.folder_with_segs_from_previous_stage).relative_to(scratch)
            nnunet_trainer.folder_with_segs_from_previous_stage = str(Path(real_results) / relative)
        batches = sample_batches(nnunet_trainer, n_batches)
    label_manager = nnunet_trainer.label_manager
    spacing = tuple(nnunet_trainer.configuration_manager.spacing)
    written = []
    for n, batch in enumerate(batches):
        title = (f"{trainer} {nnunet_trainer.plans_manager.dataset_name} {configuration} -p {plans} fold {fold}: "
                 f"augmented training batch {n}")
        fig = batch_figure(batch, spacing, title, regions=label_manager.has_regions,
                           ignore_label=label_manager.ignore_label)
        written.append(save_figure(fig, out / "training_batches" / f"batch_{n}.png"))
    return written
