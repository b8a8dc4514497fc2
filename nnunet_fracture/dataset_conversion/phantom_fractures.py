"""Fractures of the phantom: which vertebrae break, how, and the ground-truth fracture region.

Three kinds, all in the vertebral body:

- ``wedge``: the (usually superior) endplate collapses more anteriorly than posteriorly;
- ``compression``: a biconcave / crush collapse, largest in the middle of the endplate;
- ``cleft``: a thin low-density fracture line (-50..100 HU, 1-3 mm) on an oblique plane, sometimes ending
  inside the body, that breaks the cortical shell where it leaves the body; no height loss.

Wedge and compression fractures get a sclerotic (condensation) band of impacted trabeculae under the collapsed
endplate, besides the endplate depression and the height loss. How visible the fracture is, and what the ground
truth marks, follows a contrast preset (:data:`CONTRASTS`):

- ``standard``: the band is 350-500 HU denser than the vertebra's own cancellous bone, and the ground truth is
  what a reader sees - the band itself (no cortex, no margin), or the cleft and 0.5 mm either side;
- ``subtle`` (harder, the phantom of version 1): a 400-650 HU band whatever the bone around it, and ground truth
  that also covers 1 mm beyond the band, into the healthy-looking cortical endplate, or 1 mm either side of a cleft.

Never the whole vertebra. Grades are Genant-like from the largest of the anterior, middle and posterior height
losses (grade 1: 20-25 %, 2: 25-40 %, 3: > 40 %); a cleft without deformity is grade 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from nnunet_fracture.dataset_conversion.phantom_anatomy import EndplateDeformation, Spine
from nnunet_fracture.dataset_conversion.phantom_geometry import Grid, occupancy, paint
from nnunet_fracture.dataset_conversion.phantom_render import TISSUE, AnatomyVolumes, body_subbox

KINDS = ("wedge", "compression", "cleft")
_KIND_P = (0.35, 0.25, 0.40)
_GRADE_P = (0.35, 0.40, 0.25)
_LOSS_RANGE = {1: (0.21, 0.245), 2: (0.27, 0.38), 3: (0.42, 0.55)}


@dataclass(frozen=True)
class Contrast:
    """How a fracture shows in the CT and what its ground truth covers."""

    band_hu: tuple[float, float]  # range the band's HU is drawn from
    band_above_cancellous: bool  # band_hu is added to the vertebra's cancellous HU (else absolute HU)
    band_falloff: float  # share of the band's excess over cancellous bone lost at its deep edge
    band_mask_margin_mm: float  # ground truth beyond the band, towards and into the endplate (0: the band only)
    cleft_mask_margin_mm: float  # ground truth either side of a cleft


CONTRASTS = {
    "standard": Contrast(band_hu=(350.0, 500.0), band_above_cancellous=True, band_falloff=0.25,
                         band_mask_margin_mm=0.0, cleft_mask_margin_mm=0.5),
    "subtle": Contrast(band_hu=(400.0, 650.0), band_above_cancellous=False, band_falloff=0.4,
                       band_mask_margin_mm=1.0, cleft_mask_margin_mm=1.0),
}


@dataclass
class Fracture:
    kind: str
    vertebra: str
    grade: int
    height_loss: float
    band_mm: float = 0.0
    band_hu: float = 0.0
    cleft_point: Optional[np.ndarray] = None
    cleft_normal: Optional[np.ndarray] = None
    cleft_mm: float = 0.0
    cleft_hu: float = 0.0
    gap_mm: float = 0.0
    cleft_stop: Optional[tuple[np.ndarray, float]] = None  # in-plane direction m, offset e: keep (p-p0).m <= e
    deformation: Optional[EndplateDeformation] = field(default=None, repr=False)

    def describe(self) -> dict:
        out = {"type": self.kind, "vertebra": self.vertebra, "grade": self.grade,
               "height_loss": round(self.height_loss, 4)}
        if self.deformation is not None:
            out["endplate"] = "superior" if self.deformation.superior else "inferior"
            out["height_losses"] = {k: round(v, 4) for k, v in self.deformation.height_losses().items()}
            out["sclerotic_band_mm"] = round(self.band_mm, 3)
            out["sclerotic_band_hu"] = round(self.band_hu, 1)
        if self.cleft_point is not None:
            out["cleft_thickness_mm"] = round(self.cleft_mm, 3)
            out["cleft_hu"] = round(self.cleft_hu, 1)
            out["cleft_complete"] = self.cleft_stop is None
        return out


def genant_grade(loss: float) -> int:
    """Genant semi-quantitative grade of a fractional height loss (at least 1: a fracture is present)."""
    return 3 if loss >= 0.40 else 2 if loss >= 0.25 else 1


def _collapse(rng: np.random.Generator, kind: str) -> EndplateDeformation:
    grade = int(rng.choice([1, 2, 3], p=_GRADE_P))
    loss = rng.uniform(*_LOSS_RANGE[grade])
    superior = bool(rng.uniform() < 0.8)
    bump = (rng.uniform(0.0, 0.6), (rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.5)),
            (rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)))
    if kind == "wedge":
        r_ant, r_post, r_cent = loss, loss * rng.uniform(0.0, 0.25), 0.0
    else:
        q = loss * rng.uniform(0.3, 0.7)
        r_ant, r_post, r_cent = q, q, loss - q
    return EndplateDeformation(r_ant=r_ant, r_post=r_post, r_cent=r_cent, superior=superior,
                               bump_mm=bump[0], bump_freq=bump[1], bump_phase=bump[2])


def sample_fractures(rng: np.random.Generator, spine: Spine, run: list[str], fractured: bool,
                     contrast: str = "standard") -> list[Fracture]:
    """Draw 1-3 fractures on distinct vertebrae of ``run`` (none if not ``fractured``); deform their bodies."""
    look = CONTRASTS[contrast]
    if not fractured:
        return []
    n = min(int(rng.choice([1, 2, 3], p=[0.55, 0.30, 0.15])), len(run))
    weights = np.array([2.0 if name in ("T11", "T12", "L1", "L2") else 1.0 for name in run])
    chosen = rng.choice(len(run), size=n, replace=False, p=weights / weights.sum())
    out = []
    for idx in sorted(int(c) for c in chosen):
        vt = spine.by_name(run[idx])
        kind = str(rng.choice(KINDS, p=_KIND_P))
        if kind == "cleft":
            theta, phi = np.deg2rad(rng.uniform(20, 60)), rng.uniform(0, 2 * np.pi)
            normal = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
            point = np.array([rng.uniform(-0.3, 0.3) * vt.a, rng.uniform(-0.4, 0.2) * vt.b,
                              rng.uniform(-0.2, 0.2) * vt.h])
            stop = None
            if rng.uniform() < 0.5:
                m = rng.normal(size=3)
                m -= m.dot(normal) * normal
                stop = (m / np.linalg.norm(m), rng.uniform(0.0, 0.5) * min(vt.a, vt.b))
            out.append(Fracture(kind=kind, vertebra=vt.name, grade=1, height_loss=0.0, cleft_point=point,
                                cleft_normal=normal, cleft_mm=rng.uniform(1.0, 3.0),
                                # at least 120 HU below the bone it cuts, so it stays visible
                                cleft_hu=min(rng.uniform(-50, 100), vt.canc_hu - 120.0),
                                gap_mm=rng.uniform(1.0, 3.0), cleft_stop=stop))
        else:
            deform = _collapse(rng, kind)
            loss = max(deform.height_losses().values())
            vt.deformation = deform
            out.append(Fracture(kind=kind, vertebra=vt.name, grade=genant_grade(loss), height_loss=loss,
                                band_mm=rng.uniform(3.0, 6.0), deformation=deform,
                                band_hu=rng.uniform(*look.band_hu) + (vt.canc_hu if look.band_above_cancellous else 0.0)))
    return out


def render_fractures(vol: AnatomyVolumes, spine: Spine, grid: Grid, fractures: list[Fracture],
                     contrast: str = "standard") -> np.ndarray:
    """Paint each fracture into ``vol`` and return its ground truth as an instance map (1..K, uint8)."""
    look = CONTRASTS[contrast]
    instances = np.zeros(grid.shape, dtype=np.uint8)
    for k, fr in enumerate(fractures, start=1):
        vt = spine.by_name(fr.vertebra)
        sl, (u, v, w) = body_subbox(grid, vt)
        if sl is None:
            raise RuntimeError(f"fractured vertebra {fr.vertebra} is outside the field of view")
        d, top, bottom = vt.body_fields(u, v, w)
        outer, inner = occupancy(d), occupancy(d + vt.t_cort)
        if fr.cleft_point is None:
            depth = (top - w) if vt.deformation.superior else (w - bottom)  # mm below the collapsed endplate
            band = inner * occupancy(depth - fr.band_mm)
            hu = fr.band_hu - look.band_falloff * (fr.band_hu - vt.canc_hu) * np.clip(depth / fr.band_mm, 0.0, 1.0)
            paint(vol.hu, sl, band, hu)
            vol.tissue[sl][band > 0.5] = TISSUE["sclerotic_band"]
            # with no margin: the band as painted (inside the cortical shell); with one: into the endplate too
            zone = band > 0.5 if look.band_mask_margin_mm == 0 else depth <= fr.band_mm + look.band_mask_margin_mm
        else:
            p, n = fr.cleft_point, fr.cleft_normal
            dp = (u - p[0]) * n[0] + (v - p[1]) * n[1] + (w - p[2]) * n[2]
            keep = np.ones_like(dp)
            zone = np.ones(dp.shape, dtype=bool)
            if fr.cleft_stop is not None:
                m, e = fr.cleft_stop
                stop_sdf = (u - p[0]) * m[0] + (v - p[1]) * m[1] + (w - p[2]) * m[2] - e
                keep, zone = occupancy(stop_sdf), stop_sdf < 0

            def slab(thickness: float) -> np.ndarray:
                return occupancy(-(dp + thickness / 2)) - occupancy(-(dp - thickness / 2))

            shell = np.clip(outer - inner, 0.0, 1.0)
            paint(vol.hu, sl, slab(fr.cleft_mm + fr.gap_mm) * shell * keep, fr.cleft_hu)
            cleft = slab(fr.cleft_mm) * outer * keep
            paint(vol.hu, sl, cleft, fr.cleft_hu)
            vol.tissue[sl][cleft > 0.5] = TISSUE["cleft"]
            zone &= np.abs(dp) <= fr.cleft_mm / 2 + look.cleft_mask_margin_mm
        mask = zone & (d < 0) & (vol.vertebrae[sl] == vt.label)
        if not mask.any():
            raise RuntimeError(f"fracture of {fr.vertebra} has an empty ground-truth mask")
        instances[sl][mask] = k
    return instances
