"""Paint the phantom's anatomy onto a voxel grid: HU with partial volume, vertebra labels and tissue classes.

Painter's order: air, torso (subcutaneous fat, then muscle/organs), lungs, aorta, spinal canal (CSF), discs,
then per vertebra its posterior elements, ribs and body (cortical shell around cancellous bone). Soft
structures are painted for all vertebrae before any bone so a disc never covers its neighbour's body.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunet_fracture.dataset_conversion.phantom_anatomy import Spine, Vertebra, posterior_parts, rib_points
from nnunet_fracture.dataset_conversion.phantom_geometry import (
    Frame, Grid, capsule_sdf, ellipse_sdf, label_where, occupancy, paint, rotation,
)

# Tissue classes of the (noise-free) tissue map, for tests and inspection.
TISSUES = ("air", "fat", "soft", "lung", "aorta", "csf", "disc", "posterior", "rib", "cortical", "cancellous",
           "sclerotic_band", "cleft")
TISSUE = {name: i for i, name in enumerate(TISSUES)}


@dataclass
class AnatomyVolumes:
    hu: np.ndarray  # float32 (z, y, x)
    vertebrae: np.ndarray  # uint8 VerSe labels
    tissue: np.ndarray  # uint8 index into TISSUES
    cancellous: np.ndarray  # float32 cancellous-bone fraction (for trabecular texture)


def _sub(grid: Grid, frame: Frame, lo, hi):
    sl = grid.index_box(*frame.world_box(lo, hi))
    if sl is None:
        return None, (None, None, None)
    return sl, frame.local(grid, sl)


def _paint(vol: AnatomyVolumes, sl, occ, hu: float, tissue: str) -> None:
    paint(vol.hu, sl, occ, hu)
    label_where(vol.tissue, sl, occ, TISSUE[tissue])


def _torso(vol: AnatomyVolumes, spine: Spine, grid: Grid) -> None:
    t = spine.torso
    full = (slice(0, grid.shape[0]), slice(0, grid.shape[1]), slice(0, grid.shape[2]))
    x, y, z = grid.coords(full)
    d = ellipse_sdf(x[0] - t.center[0], y[0] - t.center[1], t.axes[0], t.axes[1])  # (ny, nx), z-invariant
    for dd, name in ((d, "fat"), (d + t.fat_mm, "soft")):
        occ = np.broadcast_to(occupancy(dd)[None], grid.shape)
        _paint(vol, full, occ, spine.hu[name], name)
    # Lungs: two elliptic cylinders beside the column, floored by a diaphragm dome that rises anteriorly
    # and towards the middle of each hemithorax (the costophrenic recesses reach lowest).
    if z.max() > t.diaphragm_z - 40:
        d3 = None
        for side in (-1.0, 1.0):
            cx = spine.offset[0] + side * (18.0 + t.lung_offset_x + 60.0)
            ex, ey = (x[0] - cx) / 60.0, (y[0] - t.lung_center_y) / 75.0
            e = ellipse_sdf(x[0] - cx, y[0] - t.lung_center_y, 60.0, 75.0)
            dome = t.diaphragm_z + 0.35 * (t.lung_center_y + 75.0 - y[0]) + 20.0 * np.clip(1 - ex**2 - ey**2, 0, 1)
            d_side = np.maximum(e[None], (dome[None] - z).astype(np.float32))
            d3 = d_side if d3 is None else np.minimum(d3, d_side)
        _paint(vol, full, occupancy(d3), spine.hu["lung"], "lung")


def _soft_column(vol: AnatomyVolumes, spine: Spine, grid: Grid) -> None:
    vts = spine.vertebrae
    for vt in vts:
        v_can, cu, cv = vt.canal
        lo_w, hi_w = -vt.h / 2 - max(vt.disc_below, 3.0) - 0.5, vt.h / 2 + 0.5
        sl, (u, v, w) = _sub(grid, vt.frame, (-cu - 2, v_can - cv - 2, lo_w - 2), (cu + 2, v_can + cv + 2, hi_w + 2))
        if sl is not None:
            d = np.maximum(ellipse_sdf(u, v - v_can, cu, cv), np.maximum(lo_w - w, w - hi_w))
            _paint(vol, sl, occupancy(d), spine.hu["csf"], "csf")
        if vt.level <= 12:  # aorta down to L4, left (+x) and anterior of the column
            r = spine.torso.aorta_radius
            au, av = 18.0 - 10.0 * vt.level / 12.0, -vt.b - 4.0 - r
            sl, (u, v, w) = _sub(grid, vt.frame, (au - r - 2, av - r - 2, lo_w - 2), (au + r + 2, av + r + 2, hi_w + 2))
            if sl is not None:
                d = np.maximum(ellipse_sdf(u - au, v - av, r, r), np.maximum(lo_w - w, w - hi_w))
                _paint(vol, sl, occupancy(d), spine.hu["aorta"], "aorta")
    for upper, lower in zip(vts[:-1], vts[1:]):
        c_up, c_lo = upper.frame.center, lower.frame.center
        axis = c_up - c_lo
        half = float(np.linalg.norm(axis)) / 2
        frame = Frame(center=(c_up + c_lo) / 2, rot=rotation(np.arctan(axis[1] / axis[2]), np.arctan(axis[0] / axis[2]),
                                                             0.0))
        a, b, pf = 1.02 * (upper.a + lower.a) / 2, 1.02 * (upper.b + lower.b) / 2, upper.pf
        sl, (u, v, w) = _sub(grid, frame, (-a - 2, -b - 2, -half), (a + 2, pf * b + 3, half))
        if sl is None:
            continue
        d = np.maximum(np.maximum(ellipse_sdf(u, v, a, b), v - pf * b - 1.0), np.abs(w) - half)
        _paint(vol, sl, occupancy(d), spine.hu["disc"], "disc")


def _posterior(vol: AnatomyVolumes, spine: Spine, grid: Grid, vt: Vertebra) -> None:
    parts, arch = posterior_parts(vt)
    pts = np.array([p for part in parts for p in part[:2]])
    lo = pts.min(axis=0) - 9.0
    hi = pts.max(axis=0) + 9.0
    sl, (u, v, w) = _sub(grid, vt.frame, tuple(lo), tuple(hi))
    if sl is None:
        return
    vc, cu, cv, lt = arch["v_can"], arch["cu"], arch["cv"], arch["lt"]
    d = np.maximum(np.maximum(ellipse_sdf(u, v - vc, cu + lt, cv + lt), -ellipse_sdf(u, v - vc, cu, cv)),
                   np.maximum(vc - v, np.maximum(arch["w_lo"] - w, w - arch["w_hi"])))
    for p0, p1, r_up, r_side in parts:
        d = np.minimum(d, capsule_sdf(u, v, w, p0, p1, r_up, r_side))
    occ = occupancy(d)
    _paint(vol, sl, occ, spine.hu["posterior"], "posterior")
    label_where(vol.vertebrae, sl, occ, vt.label)


def _ribs(vol: AnatomyVolumes, spine: Spine, grid: Grid, vt: Vertebra) -> None:
    for side in (-1.0, 1.0):
        pts = rib_points(vt, side)
        if not pts:
            return
        arr = np.array(pts)
        sl, (u, v, w) = _sub(grid, vt.frame, tuple(arr.min(axis=0) - 7), tuple(arr.max(axis=0) + 7))
        if sl is None:
            continue
        d = None
        for p0, p1 in zip(pts[:-1], pts[1:]):
            c = capsule_sdf(u, v, w, p0, p1, 5.5, 3.5)
            d = c if d is None else np.minimum(d, c)
        _paint(vol, sl, occupancy(d), spine.hu["rib"], "rib")


def body_subbox(grid: Grid, vt: Vertebra):
    """Slices and local coordinates of the box around a vertebral body (None, None if off-grid)."""
    return _sub(grid, vt.frame, (-vt.a - 3, -vt.b - 3, -vt.h / 2 - 3), (vt.a + 3, vt.pf * vt.b + 3, vt.h / 2 + 3))


def _body(vol: AnatomyVolumes, spine: Spine, grid: Grid, vt: Vertebra) -> None:
    sl, (u, v, w) = body_subbox(grid, vt)
    if sl is None:
        return
    d, _, _ = vt.body_fields(u, v, w)
    outer, inner = occupancy(d), occupancy(d + vt.t_cort)
    _paint(vol, sl, outer, spine.hu["cortical"], "cortical")
    _paint(vol, sl, inner, vt.canc_hu, "cancellous")
    np.maximum(vol.cancellous[sl], inner, out=vol.cancellous[sl])
    label_where(vol.vertebrae, sl, outer, vt.label)


def render_anatomy(spine: Spine, grid: Grid) -> AnatomyVolumes:
    """Noise-free, unblurred HU volume with partial volume, plus vertebra labels and tissue classes."""
    shape = grid.shape
    vol = AnatomyVolumes(hu=np.full(shape, spine.hu["air"], dtype=np.float32),
                         vertebrae=np.zeros(shape, dtype=np.uint8), tissue=np.zeros(shape, dtype=np.uint8),
                         cancellous=np.zeros(shape, dtype=np.float32))
    _torso(vol, spine, grid)
    _soft_column(vol, spine, grid)
    for vt in spine.vertebrae:
        _posterior(vol, spine, grid, vt)
        _ribs(vol, spine, grid, vt)
        _body(vol, spine, grid, vt)
    return vol
