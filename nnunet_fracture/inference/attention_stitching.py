"""An attention U-Net's coefficients over a whole preprocessed case, stitched from sliding-window tiles.

The model is loaded with nnU-Net's public ``nnUNetPredictor.initialize_from_trained_model_folder``; the tiles are
nnU-Net's own (its public ``compute_steps_for_sliding_window`` over the image padded to at least one patch with
``pad_nd_image``, as ``nnUNetv2_predict`` pads it), and each tile's coefficients are brought to the tile's
resolution (linear interpolation) and weighted with nnU-Net's Gaussian (``compute_gaussian``, its settings), as the
predictor weighs the logits. No private predictor method is overridden, so the stitching does not depend on the
order in which nnU-Net's worker thread hands tiles to the network; a 2D model runs its tiles slice by slice along
the first axis, as nnU-Net does.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from nnunet_fracture.io.checkpoints import verify_checkpoints
from nnunet_fracture.networks.unwrap import unwrap_network


@contextlib.contextmanager
def plugin_environment() -> Iterator[None]:
    """For the block: the plugin's trainers findable by nnU-Net (``nnUNet_extTrainer``) and no torch.compile."""
    from nnunet_fracture.environment import scoped_environ
    from nnunet_fracture.trainer_discovery import trainer_path

    listed = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if str(trainer_path()) not in [os.path.abspath(p) for p in listed]:
        listed.append(str(trainer_path()))
    with scoped_environ({"nnUNet_extTrainer": os.pathsep.join(listed), "nnUNet_compile": "f"}):
        yield


def check_model_folder(model: Path, fold: str, checkpoint: str) -> Path:
    """The checkpoint file of ``fold`` in the nnU-Net model folder ``model``.

    Raises:
        FileNotFoundError: no folder, plans.json / dataset.json or checkpoint (naming it and the fix).
        ValueError: ``fold`` is neither a number nor ``all``.
    """
    if not model.is_dir():
        raise FileNotFoundError(f"model folder {model} does not exist. Fix: pass the folder nnUNetv2_train wrote, "
                                f"$nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIGURATION.")
    for name in ("plans.json", "dataset.json"):
        if not (model / name).is_file():
            raise FileNotFoundError(f"{model / name} does not exist, so {model} is not an nnU-Net model folder. Fix: "
                                    f"pass $nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIGURATION.")
    if str(fold) != "all" and not str(fold).isdigit():
        raise ValueError(f"fold must be a fold number or 'all', got {fold!r}")
    checkpoint_file = model / f"fold_{fold}" / checkpoint
    if not checkpoint_file.is_file():
        folds = sorted(p.name for p in model.glob("fold_*") if p.is_dir())
        raise FileNotFoundError(f"checkpoint {checkpoint_file} does not exist (folds in {model}: "
                                f"{', '.join(folds) or 'none'}). Fix: pick a trained --fold, or --checkpoint "
                                f"checkpoint_best.pth / checkpoint_latest.pth while training runs.")
    return checkpoint_file


def stitch_attention(network: torch.nn.Module, data: torch.Tensor, patch_size: Sequence[int], tile_step_size: float,
                     device: torch.device, use_gaussian: bool = True) -> torch.Tensor:
    """Attention coefficients ``(levels, *data.shape[1:])`` (float32, CPU) of the preprocessed case ``data``
    ``(c, *spatial)``: ``network`` (an attention U-Net with ``keep_attention_maps``) on nnU-Net's sliding-window tiles,
    each level's tile maps interpolated to the tile and averaged with nnU-Net's Gaussian tile weights."""
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

    patch = tuple(int(p) for p in patch_size)
    padded, revert = pad_nd_image(data, patch, "constant", {"value": 0}, True, None)
    spatial = tuple(padded.shape[1:])
    slices_2d = len(patch) < len(spatial)  # a 2D model: tiles within each slice of the first axis
    in_plane = spatial[1:] if slices_2d else spatial
    steps = compute_steps_for_sliding_window(in_plane, patch, tile_step_size)
    weight = compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=10, dtype=torch.float32,
                              device=torch.device("cpu")) if use_gaussian else torch.ones(patch)
    sums: Optional[torch.Tensor] = None
    weights = torch.zeros(spatial, dtype=torch.float32)
    mode = "bilinear" if len(patch) == 2 else "trilinear"
    autocast = torch.autocast(device.type) if device.type == "cuda" else contextlib.nullcontext()
    network.keep_attention_maps = True
    try:
        with torch.no_grad(), autocast:
            for first in range(spatial[0]) if slices_2d else [None]:
                for start in itertools.product(*steps):
                    where = tuple(slice(s, s + p) for s, p in zip(start, patch))
                    where = (first, *where) if slices_2d else where
                    network(padded[(slice(None), *where)][None].to(device))
                    maps = network.attention_maps
                    if sums is None:
                        sums = torch.zeros((len(maps), *spatial), dtype=torch.float32)
                    for level, alpha in enumerate(maps):
                        alpha = alpha.float()
                        if tuple(alpha.shape[2:]) != patch:
                            alpha = torch.nn.functional.interpolate(alpha, size=patch, mode=mode, align_corners=False)
                        sums[level][where] += alpha[0, 0].cpu() * weight
                    weights[where] += weight
    finally:
        network.keep_attention_maps = False
    stitched = sums / weights.clamp_min(1e-12)
    return stitched[(slice(None), *revert[1:])].contiguous()


class AttentionMapPredictor:
    """A trained attention model, ready to stitch the attention coefficients of preprocessed cases.

    Built by :meth:`from_model_folder`; :meth:`predict` takes a preprocessed case ``(c, *shape)`` and returns the
    stitched maps ``(levels, *shape)`` (float32) on the preprocessed grid.
    """

    def __init__(self, predictor, checkpoint_file: Path, tile_step_size: float = 0.5):
        self.predictor = predictor
        self.checkpoint_file = checkpoint_file
        self.tile_step_size = tile_step_size
        network = unwrap_network(predictor.network)
        if not (hasattr(network, "keep_attention_maps") and hasattr(network, "attention_maps")):
            raise RuntimeError(
                f"{checkpoint_file} was trained with {predictor.trainer_name}, whose network "
                f"{type(network).__name__} has no attention gates, so there are no attention maps to export. Fix: "
                f"train an attention model (nnUNetv2_train ... -tr nnUNetTrainerAttentionUNet for mask labels, "
                f"-tr nnUNetTrainerWeakBBoxAttention for weak boxes) and pass that model folder.")
        self.network = network

    @classmethod
    def from_model_folder(cls, model: Path | str, fold: str = "0", checkpoint: str = "checkpoint_final.pth",
                          device: Optional[torch.device] = None, tile_step_size: float = 0.5,
                          trust_checkpoints: bool = False) -> "AttentionMapPredictor":
        """Load fold ``fold`` of a trained model folder (as ``nnUNetv2_predict -f FOLD -chk CHECKPOINT`` does), its
        checkpoint first checked by :func:`~nnunet_fracture.io.checkpoints.verify_checkpoints` (skipped with
        ``trust_checkpoints``).

        Raises:
            FileNotFoundError: no model folder, plans/dataset.json or checkpoint (messages name the file).
            RuntimeError: the model's network has no attention gates, or its trainer class is not found.
        """
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        model = Path(model)
        checkpoint_file = check_model_folder(model, str(fold), checkpoint)
        verify_checkpoints([checkpoint_file], trust_checkpoints)
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=False,
                                    device=device, verbose=False, allow_tqdm=False)
        with plugin_environment():
            predictor.initialize_from_trained_model_folder(str(model), use_folds=(str(fold),),
                                                           checkpoint_name=checkpoint)
        return cls(predictor, checkpoint_file, tile_step_size)

    @property
    def plans_manager(self):
        return self.predictor.plans_manager

    @property
    def configuration_manager(self):
        return self.predictor.configuration_manager

    @property
    def dataset_json(self) -> dict:
        return self.predictor.dataset_json

    def predict(self, data: torch.Tensor) -> np.ndarray:
        """Stitched attention maps ``(levels, *data.shape[1:])`` (float32) of the preprocessed case ``data``."""
        self.network.eval()
        self.network.to(self.predictor.device)
        return stitch_attention(self.network, data, self.configuration_manager.patch_size, self.tile_step_size,
                                self.predictor.device).numpy()
