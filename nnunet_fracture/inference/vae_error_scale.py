"""The error channel's scale: ``E = clip(error / scale, 0, 1)`` with ``scale`` a percentile of the error over
normal tissue of the training cases, recorded in the dataset's provenance so new images get the same scale (the
method: :mod:`nnunet_fracture.inference.vae_error`)."""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from nnunet_fracture.inference.vae_error_model import ERROR_DEFINITION, ErrorMapModel
from nnunet_fracture.training.error_channel import ERROR_CHANNEL_NAME

#: voxels of normal tissue sampled per training case for the percentile
SAMPLES_PER_CASE = 200_000
DEFAULT_PERCENTILE = 99.0


def normal_tissue_scale(samples: Iterable[np.ndarray], percentile: float) -> float:
    """The ``percentile``-th percentile of the pooled samples.

    Raises:
        ValueError: no sample, or a scale that is not positive (a VAE that reconstructs normal tissue perfectly).
    """
    pooled = np.concatenate([np.asarray(s, dtype=np.float32).ravel() for s in samples] or [np.zeros(0)])
    if pooled.size == 0:
        raise ValueError("no normal-tissue voxel to take the percentile from: every training voxel lies in a box. "
                         "Fix: pass --scale or add fracture-free cases.")
    scale = float(np.percentile(pooled, percentile))
    if not scale > 0:
        raise ValueError(f"the {percentile}th percentile of the error over normal tissue is {scale}; the error "
                         f"channel would be meaningless. Fix: choose a higher --percentile or check the VAE.")
    return scale


def check_percentile(percentile: float) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise ValueError(f"--percentile must be a number in (0, 100], got {percentile!r}")
    return float(percentile)


def vae_provenance(model: ErrorMapModel, channel: int, scale: float, percentile: Optional[float],
                   source: Optional[Path]) -> dict:
    from nnunet_fracture import __version__

    return {"channel": channel, "channel_name": ERROR_CHANNEL_NAME, "scale": scale, "percentile": percentile,
            "normalisation": "E = clip(error / scale, 0, 1)",
            "scale_from": "normal tissue: voxels with labelsTr == 0 of the training cases",
            "error": ERROR_DEFINITION, **model.describe(), "source_dataset": None if source is None else str(source),
            "plugin_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def scale_from_dataset(dataset: str | int | Path) -> tuple[float, int, dict]:
    """``(scale, channel, provenance)`` recorded by :func:`write_error_dataset` in a dataset's ``dataset.json``.

    Raises:
        FileNotFoundError, ValueError: no such dataset, or no ``nnunet_fracture.vae_error`` entry.
    """
    from nnunet_fracture.dataset_conversion.source_dataset import resolve_dataset_folder

    folder = resolve_dataset_folder(dataset)
    meta = json.loads((folder / "dataset.json").read_text())
    entry = (meta.get("nnunet_fracture") or {}).get("vae_error")
    if not entry or "scale" not in entry:
        raise ValueError(f"{folder / 'dataset.json'} records no VAE error scale (nnunet_fracture.vae_error.scale). "
                         f"Fix: pass the dataset written by `nnunet-fracture vae-error --dataset ...`, or --scale.")
    return float(entry["scale"]), int(entry["channel"]), entry
