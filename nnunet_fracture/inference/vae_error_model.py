"""The trained VAE as an error-map model for ``vae-error``: a folder of ``nnUNetTrainerNormalVAE`` folds with
nnU-Net's preprocessing and sliding window around it (the method: :mod:`nnunet_fracture.inference.vae_error`; the
error map's predictor and inside / outside summary, shared with training: :mod:`nnunet_fracture.networks.vae_error_map`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from nnunet_fracture.inference.image_grid import to_image_grid
from nnunet_fracture.io.checkpoints import verify_checkpoints
from nnunet_fracture.networks.unwrap import unwrap_network

ERROR_DEFINITION = ("mean over the VAE's input channels of |x - x_hat| (x: the CT after nnU-Net's normalisation "
                    "of the VAE's plans; x_hat: its reconstruction from the posterior mean), sliding windows with "
                    "gaussian blending, resampled to the CT's grid")


class ErrorMapModel:
    """A trained VAE model folder, ready to compute error maps of raw images in their own geometry.

    Args:
        model_dir: ``$nnUNet_results/DatasetXXX_NAME/nnUNetTrainerNormalVAE__PLANS__CONFIGURATION``.
        folds: folds to average (default: every ``fold_X`` holding ``checkpoint``, else ``fold_all``).
        checkpoint: checkpoint file name in each fold folder.
        device: default CUDA when available, else CPU.
        mirror: also average mirrored passes (nnU-Net's test-time mirroring; 8x slower in 3D).
        trust_checkpoints: load the checkpoints with pickle unchecked (see :mod:`nnunet_fracture.io.checkpoints`).

    Raises:
        FileNotFoundError: the folder, its plans.json/dataset.json or a fold's checkpoint is missing.
        ValueError: the model is not a VAE, or a checkpoint holds more than an nnU-Net checkpoint needs.
        RuntimeError: ``nnUNet_extTrainer`` does not list the plugin's trainers.
    """

    def __init__(self, model_dir: Path | str, folds: Optional[Sequence[int | str]] = None,
                 checkpoint: str = "checkpoint_final.pth", device: Optional[torch.device] = None,
                 mirror: bool = False, trust_checkpoints: bool = False) -> None:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        from nnunet_fracture.environment import ext_trainer_problem
        from nnunet_fracture.networks.vae import ConvVAE

        model_dir = Path(model_dir).absolute()
        for needed in (model_dir, model_dir / "plans.json", model_dir / "dataset.json"):
            if not needed.exists():
                raise FileNotFoundError(f"{needed} does not exist. Fix: --vae must be the model folder written by "
                                        f"`nnUNetv2_train ... -tr nnUNetTrainerNormalVAE`, e.g. $nnUNet_results/"
                                        f"Dataset501_X/nnUNetTrainerNormalVAE__nnUNetPlans__3d_fullres")
        if folds is None:
            folds = nnUNetPredictor.auto_detect_available_folds(str(model_dir), checkpoint)
            if not folds and (model_dir / "fold_all" / checkpoint).is_file():  # nnU-Net's detection skips fold_all
                folds = ["all"]
            if not folds:
                raise FileNotFoundError(f"no fold_X/{checkpoint} in {model_dir}. Fix: finish training (or pass "
                                        f"--checkpoint checkpoint_best.pth / checkpoint_latest.pth).")
        folds = [f if f == "all" else int(f) for f in folds]
        for fold in folds:
            path = model_dir / f"fold_{fold}" / checkpoint
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist. Fix: train fold {fold} first, or choose other "
                                        f"--folds / --checkpoint.")
        verify_checkpoints([model_dir / f"fold_{fold}" / checkpoint for fold in folds], trust_checkpoints)
        problem = ext_trainer_problem()
        if problem:
            raise RuntimeError(problem)
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                                    perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(model_dir), folds, checkpoint)
        network = unwrap_network(predictor.network)
        if not isinstance(network, ConvVAE):
            raise ValueError(f"{model_dir} holds a {predictor.trainer_name} model ({type(network).__name__}), not a "
                             f"VAE. Fix: pass the folder of a model trained with -tr nnUNetTrainerNormalVAE.")
        self.model_dir, self.folds, self.checkpoint, self.mirror = model_dir, folds, checkpoint, mirror
        self.predictor = predictor
        self.channel_names = {int(k): v for k, v in predictor.dataset_json["channel_names"].items()}

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def describe(self) -> dict:
        return {"model": str(self.model_dir), "trainer": self.predictor.trainer_name, "folds": list(self.folds),
                "checkpoint": self.checkpoint, "mirror": self.mirror}

    def error_map(self, image_files: Sequence[Path | str]) -> np.ndarray:
        """The raw (unnormalised) error map of one case, a float32 array on the grid of ``image_files[0]``
        (SimpleITK array order z, y, x). ``image_files`` are the case's channels in the VAE's channel order."""
        p = self.predictor
        preprocessor = p.configuration_manager.preprocessor_class(verbose=False)
        data, _, properties = preprocessor.run_case([str(f) for f in image_files], None, p.plans_manager,
                                                    p.configuration_manager, p.dataset_json)
        error = p.predict_logits_from_preprocessed_data(torch.from_numpy(data))[:1].float()
        del data
        return to_image_grid(error, properties, p.plans_manager, p.configuration_manager)
