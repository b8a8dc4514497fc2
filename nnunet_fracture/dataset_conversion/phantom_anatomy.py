"""The phantom's anatomy: a T4-L5 column sampled per case, and the field of view that shows part of it.

All sizes are millimetres and follow adult averages: vertebral bodies grow caudally (height 17 -> 27 mm,
width 27 -> 50 mm), discs thicken from 4 mm (upper thoracic) to 10 mm (lumbar), thoracic spinous processes
point steeply down and thoracic vertebrae carry ribs. The column follows a thoracic kyphosis and a lumbar
lordosis of random amplitude. World coordinates are LPS (x to the patient's left, y posterior, z superior),
as SimpleITK reports them. Nothing here depends on the voxel spacing: only :func:`field_of_view` turns the
chosen physical extent into a grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from nnunet_fracture.dataset_conversion.phantom_geometry import Frame, Grid, ellipse_sdf, rotation

VERTEBRA_NAMES = ("T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
VERSE_LABELS = {name: 11 + i for i, name in enumerate(VERTEBRA_NAMES)}  # T4=11 ... T12=19, L1=20 ... L5=24

# Per level, cranial to caudal (T4 ... L5), in mm.
_HEIGHT = (17.0, 17.5, 18.0, 18.5, 19.0, 19.5, 20.5, 21.5, 22.5, 24.0, 25.0, 26.0, 26.5, 27.0)
_HALF_WIDTH = (13.5, 14.0, 14.5, 15.0, 15.5, 16.5, 17.5, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0)
_HALF_DEPTH = (11.5, 12.0, 12.5, 13.0, 13.5, 14.0, 14.5, 15.0, 15.5, 16.0, 16.5, 17.0, 17.5, 17.5)
_DISC_BELOW = (4.0, 4.0, 4.5, 4.5, 5.0, 5.0, 5.5, 6.0, 7.0, 8.5, 9.5, 10.0, 10.5, 0.0)
_CANAL_HALF_WIDTH = (8.0, 8.0, 8.0, 8.0, 8.0, 8.3, 8.6, 9.0, 9.5, 10.5, 11.0, 11.5, 12.0, 12.5)
_CANAL_HALF_DEPTH = (7.5,) * 9 + (8.0, 8.0, 8.0, 8.0, 8.5)
_TP_LENGTH = (16.0, 16.0, 16.0, 15.5, 15.0, 14.5, 14.0, 12.0, 10.0, 14.0, 18.0, 22.0, 20.0, 18.0)
_SP_LENGTH = (30.0, 30.0, 30.0, 30.0, 30.0, 28.0, 28.0, 26.0, 26.0, 27.0, 27.0, 26.0, 25.0, 24.0)
_SP_ANGLE_DEG = (50.0, 55.0, 58.0, 60.0, 58.0, 50.0, 40.0, 30.0, 20.0, 12.0, 10.0, 8.0, 8.0, 10.0)
_RIB_LENGTH = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.55, 0.35)  # T4 ... T12 (T11, T12 float)

FOV_XY_MM = 144.0
MAX_EXTENT_Z_MM = 225.0


@dataclass
class EndplateDeformation:
    """Collapse of one endplate, as fractions of the body height: anterior, posterior and central extra."""

    r_ant: float
    r_post: float
    r_cent: float
    superior: bool = True
    bump_mm: float = 0.0
    bump_freq: tuple[float, float] = (0.3, 0.3)
    bump_phase: tuple[float, float] = (0.0, 0.0)

    def drop(self, vt: "Vertebra", u, tt):
        """How far (mm) the endplate moves into the body at local (u, tt); tt = 0 anterior, 1 posterior."""
        central = 4.0 * tt * (1.0 - tt) * np.clip(1.0 - (u / vt.a) ** 2, 0.0, 1.0)
        d = vt.h * (self.r_ant * (1.0 - tt) + self.r_post * tt + self.r_cent * central)
        if self.bump_mm:
            d = d + self.bump_mm * (0.5 + 0.5 * np.sin(self.bump_freq[0] * u + self.bump_phase[0])
                                    * np.sin(self.bump_freq[1] * tt * 2 * vt.b + self.bump_phase[1]))
        return d

    def height_losses(self) -> dict[str, float]:
        """Genant heights lost (fraction of the expected height): anterior, middle, posterior."""
        return {"anterior": self.r_ant, "middle": 0.5 * (self.r_ant + self.r_post) + self.r_cent,
                "posterior": self.r_post}


@dataclass
class Vertebra:
    name: str
    level: int  # 0 = T4 ... 13 = L5
    frame: Frame
    h: float
    a: float
    b: float
    pf: float  # posterior wall at v = pf * b
    waist: float
    conc: float
    t_cort: float
    disc_above: float
    disc_below: float
    canc_hu: float
    deformation: Optional[EndplateDeformation] = None

    @property
    def label(self) -> int:
        return VERSE_LABELS[self.name]

    @property
    def thoracic(self) -> bool:
        return self.name.startswith("T")

    @property
    def canal(self) -> tuple[float, float, float]:
        """Canal centre v and half-width/half-depth."""
        cv = _CANAL_HALF_DEPTH[self.level]
        return self.pf * self.b + cv, _CANAL_HALF_WIDTH[self.level], cv

    def body_fields(self, u, v, w):
        """Signed distance to the (possibly deformed) body, and its top/bottom endplate heights."""
        taper = 1.0 - self.waist * np.clip(1.0 - (2.0 * w / self.h) ** 2, 0.0, 1.0)
        d_side = ellipse_sdf(u, v, self.a * taper, self.b * taper)
        r2 = np.clip((u / self.a) ** 2 + (v / self.b) ** 2, 0.0, 1.0)
        top = self.h / 2 - self.conc * (1.0 - r2)
        bottom = -top
        if self.deformation is not None:
            tt = np.clip((v + self.b) / (self.b * (1.0 + self.pf)), 0.0, 1.0)
            drop = self.deformation.drop(self, u, tt)
            if self.deformation.superior:
                top = top - drop
            else:
                bottom = bottom + drop
        d = np.maximum(np.maximum(d_side, v - self.pf * self.b), np.maximum(w - top, bottom - w))
        return d, top, bottom


@dataclass
class Torso:
    center: tuple[float, float]  # body outline centre (x, y)
    axes: tuple[float, float]
    fat_mm: float
    diaphragm_z: float  # lungs exist above this z at the back, higher anteriorly
    lung_center_y: float
    lung_offset_x: float
    aorta_radius: float


@dataclass
class Spine:
    vertebrae: list[Vertebra]
    torso: Torso
    hu: dict[str, float]
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def by_name(self, name: str) -> Vertebra:
        return self.vertebrae[VERTEBRA_NAMES.index(name)]


def sample_spine(rng: np.random.Generator) -> Spine:
    """Draw one patient's column, torso and tissue densities (world mm, LPS)."""
    size = rng.uniform(0.9, 1.1)
    disc_scale = rng.uniform(0.85, 1.15)
    pf, waist = rng.uniform(0.78, 0.86), rng.uniform(0.04, 0.09)
    conc, t_cort = rng.uniform(0.5, 1.2), rng.uniform(1.3, 1.8)
    hu = {"cortical": rng.uniform(750, 950), "cancellous": rng.uniform(160, 270),
          "posterior": rng.uniform(550, 750), "rib": rng.uniform(450, 650), "disc": rng.uniform(70, 95),
          "soft": rng.uniform(35, 55), "fat": rng.uniform(-110, -75), "csf": rng.uniform(5, 25),
          "lung": rng.uniform(-880, -780), "aorta": rng.uniform(40, 250), "air": -1000.0}
    n = len(VERTEBRA_NAMES)
    jitter = rng.uniform(0.97, 1.03, size=(n, 3))
    h = np.array(_HEIGHT) * size * jitter[:, 0]
    a = np.array(_HALF_WIDTH) * size * jitter[:, 1]
    b = np.array(_HALF_DEPTH) * size * jitter[:, 2]
    disc = np.array(_DISC_BELOW) * size * disc_scale * rng.uniform(0.9, 1.1, size=n)
    canc = np.clip(hu["cancellous"] + rng.normal(0.0, 10.0, size=n), 150.0, 300.0)
    twist = np.deg2rad(rng.normal(0.0, 1.5, size=n))
    lordosis, kyphosis, scoliosis = rng.uniform(6, 14), rng.uniform(6, 14), rng.uniform(0, 4)
    phase = rng.uniform(0, 2 * np.pi)

    z = np.zeros(n)  # body centres, stacked from L5 (bottom of L5 at z = 0) upwards
    z[-1] = h[-1] / 2
    for i in range(n - 2, -1, -1):
        z[i] = z[i + 1] + h[i + 1] / 2 + disc[i] + h[i] / 2
    s = (n - 1) - np.arange(n, dtype=float)  # L5 = 0 ... T4 = 13
    y = -lordosis * np.exp(-(((s - 2.0) / 1.8) ** 2)) + kyphosis * np.exp(-(((s - 10.0) / 3.0) ** 2))
    x = scoliosis * np.sin(2 * np.pi * s / n + phase)
    dydz, dxdz = np.gradient(y, z), np.gradient(x, z)

    offset = np.array([rng.uniform(-40, 40), rng.uniform(-30, 30), rng.uniform(-700, -300)])
    vertebrae = []
    for i, name in enumerate(VERTEBRA_NAMES):
        frame = Frame(center=np.array([x[i], y[i], z[i]]) + offset,
                      rot=rotation(np.arctan(dydz[i]), np.arctan(dxdz[i]), twist[i]))
        vertebrae.append(Vertebra(name=name, level=i, frame=frame, h=h[i], a=a[i], b=b[i], pf=pf, waist=waist,
                                  conc=conc, t_cort=t_cort, disc_above=disc[i - 1] if i else 0.0,
                                  disc_below=disc[i], canc_hu=float(canc[i])))
    axes = (rng.uniform(130, 170), rng.uniform(95, 125))
    torso = Torso(center=(offset[0] + rng.uniform(-5, 5), 0.0), axes=axes, fat_mm=rng.uniform(6, 18),
                  diaphragm_z=z[VERTEBRA_NAMES.index("T11")] + offset[2] + rng.uniform(-10, 10),
                  lung_center_y=offset[1] - 40.0, lung_offset_x=rng.uniform(6, 12),
                  aorta_radius=rng.uniform(9, 13))
    return Spine(vertebrae=vertebrae, torso=torso, hu=hu, offset=offset)


def spinous_tip_v(vt: Vertebra) -> float:
    v_can, _, cv = vt.canal
    return v_can + cv + 4.5 + _SP_LENGTH[vt.level] * np.cos(np.deg2rad(_SP_ANGLE_DEG[vt.level]))


def choose_run(spine: Spine, rng: np.random.Generator) -> tuple[list[str], float, float]:
    """Pick 4-6 contiguous vertebrae that fit the z extent; return names and the z range (world mm)."""
    n_v = int(rng.choice([4, 5, 6], p=[0.3, 0.4, 0.3]))
    start_u, margin_lo, margin_hi = rng.uniform(), rng.uniform(3, 12), rng.uniform(3, 12)
    while True:
        start = int(start_u * (len(VERTEBRA_NAMES) - n_v + 1))
        run = spine.vertebrae[start:start + n_v]
        z_hi = max(vt.frame.center[2] + vt.h / 2 + 2 for vt in run) + margin_hi
        z_lo = min(vt.frame.center[2] - vt.h / 2 - 2 for vt in run) - margin_lo
        if z_hi - z_lo <= MAX_EXTENT_Z_MM or n_v == 4:
            return [vt.name for vt in run], z_lo, z_hi
        n_v -= 1


def field_of_view(spine: Spine, rng: np.random.Generator,
                  spacing: tuple[float, float, float]) -> tuple[list[str], Grid]:
    """Choose the visible run and place a FOV_XY_MM-wide grid around it with air behind the back.

    Sets the torso's outline so that the skin lies 8-20 mm behind the spinous processes. Random draws
    happen before the spacing is used, so every spacing shows the same anatomy.
    """
    run, z_lo, z_hi = choose_run(spine, rng)
    vts = [spine.by_name(n) for n in run]
    cx = float(np.mean([vt.frame.center[0] for vt in vts]))
    cy = float(np.mean([vt.frame.center[1] for vt in vts]))
    skin = cy + float(np.mean([spinous_tip_v(vt) for vt in vts])) + rng.uniform(8, 20)
    t = spine.torso
    t.center = (t.center[0], skin - t.axes[1])
    t.lung_center_y = cy - 40.0
    y_hi = skin + rng.uniform(5, 12)
    lo = np.array([cx - FOV_XY_MM / 2 + rng.uniform(-6, 6), y_hi - FOV_XY_MM, z_lo])
    extent = np.array([FOV_XY_MM, FOV_XY_MM, z_hi - z_lo])
    sp = np.asarray(spacing, dtype=float)
    size = tuple(int(max(np.ceil(e / s - 1e-6), 2)) for e, s in zip(extent, sp))
    origin = tuple(float(np.round(v, 3)) for v in lo + sp / 2)
    return run, Grid(origin=origin, spacing=tuple(float(s) for s in sp), size=size)  # type: ignore[arg-type]


def posterior_parts(vt: Vertebra):
    """Capsules (p0, p1, r_up, r_side) and the neural arch of one vertebra, in its local frame."""
    v_can, cu, cv = vt.canal
    i, th = vt.level, vt.thoracic
    frac = i / (len(VERTEBRA_NAMES) - 1)
    lt = 4.0 if th else 5.0
    ped_u, ped_w = 3.5 + 2.5 * frac, 5.5 + 2.5 * frac
    parts = []
    for side in (-1.0, 1.0):
        pu = side * (cu + ped_u * 0.6)
        parts.append(((pu, vt.pf * vt.b - 3.0, 0.15 * vt.h), (pu, v_can + 2.0, 0.15 * vt.h), ped_w, ped_u))
        tp_len = _TP_LENGTH[i]
        root = (side * (cu + lt * 0.5), v_can + 1.0, 0.12 * vt.h)
        tip = (side * (cu + lt + tp_len), v_can + (9.0 if th else 2.0), 0.05 * vt.h)
        parts.append((root, tip, 5.0, 4.5 if th else 3.0))
        parts.append(((side * (cu + 2), v_can + 2, 0.1 * vt.h),
                      (side * (cu + 3), v_can + 4, 0.5 * vt.h + 0.7 * vt.disc_above), 4.0, 4.0))
        parts.append(((side * (cu + 1), v_can + 0.8 * cv, 0.0),
                      (side * cu, v_can + cv + 2, -0.5 * vt.h - 0.6 * max(vt.disc_below, 4.0)), 4.0, 4.0))
    ang = np.deg2rad(_SP_ANGLE_DEG[i])
    p0 = np.array([0.0, v_can + cv + lt * 0.5, -0.05 * vt.h])
    p1 = p0 + _SP_LENGTH[i] * np.array([0.0, np.cos(ang), -np.sin(ang)])
    r_up = 4.5 if i <= 6 else (6.0 if th else 8.0)
    parts.append((tuple(p0), tuple(p1), r_up, 3.0 if th else 3.5))
    arch = {"v_can": v_can, "cu": cu, "cv": cv, "lt": lt, "w_lo": -0.4 * vt.h, "w_hi": 0.3 * vt.h}
    return parts, arch


def rib_points(vt: Vertebra, side: float) -> list[np.ndarray]:
    """Polyline of one rib (local mm) from the costovertebral joint around the chest; [] below T12."""
    if not vt.thoracic:
        return []
    v_can, cu, _ = vt.canal
    length = _RIB_LENGTH[vt.level]
    tub_u = cu + 4.0 + _TP_LENGTH[vt.level] + 1.0
    pts = [(0.92 * vt.a, 0.55 * vt.pf * vt.b, 0.45 * vt.h), (tub_u, v_can + 6.0, 0.0)]
    for du, dv, dw in ((30.0, 2.0, -8.0), (55.0, -30.0, -20.0), (68.0, -80.0, -30.0)):
        pts.append((tub_u + du * length, v_can + 6.0 + dv * length, dw * length))
    return [np.array([side * p[0], p[1], p[2]]) for p in pts]
