"""How visible each phantom fracture is: its contrast-to-noise ratio against the healthy bone around it.

For a fracture with ground truth F in vertebra V, the reference is V's healthy cancellous bone H: the noise-free
tissue map's cancellous voxels of V outside every fracture, eroded by one voxel so that the blurred cortex does not
count as bone texture. Both are read from the final CT (texture, blur and noise included)::

    contrast_hu = mean(CT[F]) - mean(CT[H])        cnr = contrast_hu / std(CT[H])

Clefts are darker than the bone (negative), condensation bands brighter (positive). ``phantom`` prints the
summary per fracture kind and writes it to ``phantom.json``, so the difficulty of a phantom is a measured fact.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from nnunet_fracture.dataset_conversion.phantom_render import TISSUE


def fracture_contrast(ct: np.ndarray, instances: np.ndarray, vertebrae: np.ndarray, tissue: np.ndarray,
                      labels: list[int]) -> list[dict]:
    """``{"contrast_hu", "cnr"}`` of fracture k = 1..K (``instances == k``, in vertebra ``labels[k-1]``)."""
    if not ct.shape == instances.shape == vertebrae.shape == tissue.shape:
        raise ValueError(f"shapes differ: ct {ct.shape}, instances {instances.shape}, vertebrae {vertebrae.shape}, "
                         f"tissue {tissue.shape}")
    healthy_bone = (tissue == TISSUE["cancellous"]) & (instances == 0)
    out = []
    for k, label in enumerate(labels, start=1):
        fracture = ct[instances == k].astype(np.float64)
        healthy = ct[ndimage.binary_erosion(healthy_bone & (vertebrae == label))].astype(np.float64)
        if fracture.size == 0 or healthy.size < 2:
            out.append({"contrast_hu": None, "cnr": None})
            continue
        contrast = float(fracture.mean() - healthy.mean())
        spread = float(healthy.std())
        out.append({"contrast_hu": round(contrast, 1), "cnr": round(contrast / spread, 2) if spread > 0 else None})
    return out


def contrast_by_kind(fractures: list[dict]) -> dict:
    """Per fracture kind (``type``): count, mean / min / max CNR and mean contrast (HU) over ``fractures``."""
    summary = {}
    for kind in sorted({f["type"] for f in fractures}):
        cnr = np.array([f["cnr"] for f in fractures if f["type"] == kind and f["cnr"] is not None], dtype=float)
        hu = np.array([f["contrast_hu"] for f in fractures if f["type"] == kind and f["contrast_hu"] is not None],
                      dtype=float)
        summary[kind] = {"fractures": int(sum(f["type"] == kind for f in fractures)),
                         "cnr_mean": round(float(cnr.mean()), 2) if cnr.size else None,
                         "cnr_min": round(float(cnr.min()), 2) if cnr.size else None,
                         "cnr_max": round(float(cnr.max()), 2) if cnr.size else None,
                         "contrast_hu_mean": round(float(hu.mean()), 1) if hu.size else None}
    return summary


def format_contrast(summary: dict) -> str:
    """One line: ``wedge: 12 fractures, CNR 6.1 (4.0-8.2), +410 HU; ...``."""
    parts = [f"{kind}: {s['fractures']} fracture(s), CNR {s['cnr_mean']:.1f} ({s['cnr_min']:.1f} to "
             f"{s['cnr_max']:.1f}), {s['contrast_hu_mean']:+.0f} HU" if s["cnr_mean"] is not None
             else f"{kind}: {s['fractures']} fracture(s), CNR n/a" for kind, s in summary.items()]
    return "; ".join(parts) if parts else "no fractures"
