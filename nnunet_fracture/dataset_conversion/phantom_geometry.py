"""Geometry for the synthetic spine phantom: a voxel grid in millimetres, local frames and soft shapes.

Every anatomical structure is described by an (approximate) signed distance function in millimetres, negative
inside, evaluated at voxel centres in a local frame. :func:`occupancy` turns it into a partial-volume fraction
whose ramp is as wide as the voxel's extent along the surface normal, so thin structures (a 1.5 mm cortex, a
1 mm fracture cleft) keep the right average intensity whatever the spacing, and a voxel counts as inside
(occupancy > 0.5) exactly when its centre is. Only sub-boxes around each structure are ever evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Slices = tuple[slice, slice, slice]  # numpy (z, y, x) order


@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel grid (identity direction); ``origin`` is the centre of voxel (0, 0, 0), in mm."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    size: tuple[int, int, int]  # (nx, ny, nz), ITK order

    @property
    def shape(self) -> tuple[int, int, int]:
        """The numpy array shape (nz, ny, nx)."""
        return self.size[2], self.size[1], self.size[0]

    def index_box(self, lo_mm: np.ndarray, hi_mm: np.ndarray) -> Slices | None:
        """Numpy slices covering the world box [lo_mm, hi_mm] (x, y, z), or None if it misses the grid."""
        bounds = []
        for ax in range(3):
            o, s, n = self.origin[ax], self.spacing[ax], self.size[ax]
            i0 = max(int(np.floor((lo_mm[ax] - o) / s)), 0)
            i1 = min(int(np.ceil((hi_mm[ax] - o) / s)) + 1, n)
            if i1 <= i0:
                return None
            if i1 - i0 < 2:  # np.gradient needs two samples per axis
                i0, i1 = (i0 - 1, i1) if i0 > 0 else (i0, i1 + 1)
            bounds.append(slice(i0, i1))
        return bounds[2], bounds[1], bounds[0]

    def coords(self, sl: Slices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y, z of the voxel centres in ``sl``, shaped to broadcast to the sub-box."""
        z = self.origin[2] + self.spacing[2] * np.arange(sl[0].start, sl[0].stop, dtype=np.float64)
        y = self.origin[1] + self.spacing[1] * np.arange(sl[1].start, sl[1].stop, dtype=np.float64)
        x = self.origin[0] + self.spacing[0] * np.arange(sl[2].start, sl[2].stop, dtype=np.float64)
        return x[None, None, :], y[None, :, None], z[:, None, None]


@dataclass(frozen=True)
class Frame:
    """A local frame: ``center`` in world mm and ``rot`` whose columns are the local u, v, w axes in world."""

    center: np.ndarray
    rot: np.ndarray

    def local(self, grid: Grid, sl: Slices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Local (u, v, w) coordinates, float32, of the voxel centres in ``sl``."""
        x, y, z = grid.coords(sl)
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        r = self.rot
        out = []
        for col in range(3):
            out.append((r[0, col] * dx + r[1, col] * dy + r[2, col] * dz).astype(np.float32))
        return out[0], out[1], out[2]

    def world_box(self, lo: tuple[float, float, float],
                  hi: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        """World-axis-aligned bounds of the local box [lo, hi]."""
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        world = corners @ self.rot.T + self.center
        return world.min(axis=0), world.max(axis=0)

    def to_world(self, p: np.ndarray) -> np.ndarray:
        return self.rot @ np.asarray(p, dtype=np.float64) + self.center


def rotation(tilt_yz: float, tilt_xz: float, twist: float) -> np.ndarray:
    """Rotation whose w column is the axis (tan tilt_xz, tan tilt_yz, 1) normalised, twisted about it."""
    w = np.array([np.tan(tilt_xz), np.tan(tilt_yz), 1.0])
    w /= np.linalg.norm(w)
    u = np.array([1.0, 0.0, 0.0]) - w[0] * w
    u /= np.linalg.norm(u)
    v = np.cross(w, u)
    c, s = np.cos(twist), np.sin(twist)
    u, v = c * u + s * v, -s * u + c * v
    return np.stack([u, v, w], axis=1)


def occupancy(d: np.ndarray) -> np.ndarray:
    """Partial-volume fraction of a signed distance field (negative inside), ramp = voxel extent on the normal."""
    grads = np.gradient(d)
    width = np.abs(grads[0])
    for g in grads[1:]:
        width += np.abs(g)
    np.maximum(width, 1e-3, out=width)
    return np.clip(0.5 - d / width, 0.0, 1.0).astype(np.float32)


def ellipse_sdf(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    """First-order distance (mm) to the ellipse (x/a)^2 + (y/b)^2 = 1; good near the boundary."""
    r = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    g = np.sqrt((x / a**2) ** 2 + (y / b**2) ** 2) / np.maximum(r, 1e-6)
    return (r - 1.0) / np.maximum(g, 1.0 / np.maximum(a, b))


def capsule_sdf(u: np.ndarray, v: np.ndarray, w: np.ndarray, p0, p1, r_up: float, r_side: float) -> np.ndarray:
    """Segment p0-p1 (local mm) with an elliptic cross-section: r_up towards local +w, r_side across."""
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    e = axis / length
    up = np.array([0.0, 0.0, 1.0]) - e[2] * e
    if np.linalg.norm(up) < 1e-6:
        up = np.array([0.0, 1.0, 0.0]) - e[1] * e
    n1 = up / np.linalg.norm(up)
    n2 = np.cross(e, n1)
    du, dv, dw = u - p0[0], v - p0[1], w - p0[2]
    t = np.clip((du * e[0] + dv * e[1] + dw * e[2]) / length, 0.0, 1.0) * length
    qu, qv, qw = du - t * e[0], dv - t * e[1], dw - t * e[2]
    r_cap = min(r_up, r_side)  # the rounded ends
    a0 = (qu * e[0] + qv * e[1] + qw * e[2]) / r_cap
    a1 = (qu * n1[0] + qv * n1[1] + qw * n1[2]) / r_up
    a2 = (qu * n2[0] + qv * n2[1] + qw * n2[2]) / r_side
    return (np.sqrt(a0 * a0 + a1 * a1 + a2 * a2) - 1.0) * r_cap


def paint(img: np.ndarray, sl: Slices, occ: np.ndarray, value) -> None:
    """Painter's algorithm with partial volume: img = img + occ * (value - img) inside ``sl``."""
    sub = img[sl]
    sub += occ * (value - sub)


def label_where(target: np.ndarray, sl: Slices, occ: np.ndarray, value: int) -> None:
    """Set ``target`` to ``value`` where the voxel centre is inside (occupancy > 0.5)."""
    target[sl][occ > 0.5] = value
