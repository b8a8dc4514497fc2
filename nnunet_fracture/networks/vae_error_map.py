"""The VAE's error map, shared by training and inference: an ``nnUNetPredictor`` that slides a VAE network over a
volume (its "logits" are the per-voxel error) and the summary of an error map inside vs outside the labelled
voxels. ``nnUNetTrainerNormalVAE``'s final validation (:mod:`nnunet_fracture.training.vae_validation`) and
``vae-error`` (:mod:`nnunet_fracture.inference.vae_error_model`) both use them."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def error_predictor(network: torch.nn.Module, plans_manager, configuration_manager, dataset_json: dict,
                    trainer_name: str, device: torch.device, mirror: bool = False, step: float = 0.5,
                    parameters: Optional[list] = None):
    """An ``nnUNetPredictor`` around a VAE network (gaussian blending; mirroring only with ``mirror``)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=step, use_gaussian=True, use_mirroring=mirror,
                                perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    dims = len(configuration_manager.patch_size)
    predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                    trainer_name, tuple(range(dims)) if mirror else None)
    return predictor


def inside_outside_summary(cases: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Mean error inside and outside the labelled (box / fracture) voxels, per case and pooled.

    Args:
        cases: ``{case: (error, inside)}`` with ``inside`` a boolean array of the error's shape.
    """
    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return None if a is None or b is None or b == 0 else round(a / b, 4)

    per_case, sums = {}, np.zeros(4)
    for case, (error, inside) in cases.items():
        error = np.asarray(error, dtype=np.float64)
        inside = np.asarray(inside, dtype=bool)
        if error.shape != inside.shape:
            raise ValueError(f"case {case}: error map shape {error.shape} differs from label shape {inside.shape}")
        s_in, n_in = float(error[inside].sum()), int(inside.sum())
        s_out, n_out = float(error[~inside].sum()), int((~inside).sum())
        sums += (s_in, n_in, s_out, n_out)
        m_in = round(s_in / n_in, 6) if n_in else None
        m_out = round(s_out / n_out, 6) if n_out else None
        per_case[case] = {"mean_inside": m_in, "mean_outside": m_out, "ratio_inside_outside": ratio(m_in, m_out),
                          "voxels_inside": n_in}
    m_in = round(sums[0] / sums[1], 6) if sums[1] else None
    m_out = round(sums[2] / sums[3], 6) if sums[3] else None
    return {"pooled": {"mean_inside": m_in, "mean_outside": m_out, "ratio_inside_outside": ratio(m_in, m_out)},
            "cases": per_case}
