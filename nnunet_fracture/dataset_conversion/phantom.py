"""Synthetic spine CT phantoms with known fracture masks, in the generic input format.

``write_phantom(out_dir, n_cases, seed)`` writes::

    out_dir/images/phantom_000.nii.gz      CT, int16 HU
    out_dir/masks/phantom_000.nii.gz       uint8 0/1 ground-truth fracture mask
    out_dir/vertebrae/phantom_000.nii.gz   uint8 vertebra labels (VerSe numbers, T4=11 ... L5=24)
    out_dir/boxes.csv                      one loose box per fracture, space=voxel (i, j, k inclusive)
    out_dir/phantom.json                   settings, seed, version, per-case vertebrae and fractures

Each case shows 4-6 contiguous vertebrae of a T4-L5 column (see :mod:`.phantom_anatomy`) with partial
volume, a Gaussian point-spread function, trabecular texture and correlated noise. Geometry is built in
millimetres, so any spacing shows the same anatomy. Case status (normal or fractured) is fixed per block of
five cases: exactly one of cases 5b+1 ... 5b+4 is fracture-free and case 5b always has a fracture, so any
five consecutive cases from 0 include a normal case and at least three fractured ones. Everything is drawn
from ``numpy.random.default_rng([seed, case_index, stream])``: the same seed gives byte-identical files.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.phantom_anatomy import FOV_XY_MM, VERSE_LABELS, field_of_view, sample_spine
from nnunet_fracture.dataset_conversion.phantom_contrast import contrast_by_kind, fracture_contrast
from nnunet_fracture.dataset_conversion.phantom_fractures import CONTRASTS, render_fractures, sample_fractures
from nnunet_fracture.dataset_conversion.phantom_render import TISSUES, render_anatomy
from nnunet_fracture.io.verified_writes import write_image

PHANTOM_VERSION = "2"  # 2: visible-fracture masks and the contrast presets (1 = contrast "subtle")
DEFAULT_SPACING = (1.5, 1.5, 1.5)
NOISE_SIGMA_HU = (20.0, 40.0)
PSF_SIGMA_MM = (0.5, 0.9)
TEXTURE_HU = 25.0
BOX_MARGIN_VOXELS = (1, 4)
MAX_VOXELS = 64_000_000
BOXES_HEADER = ("case_id", "x_min", "y_min", "z_min", "x_max", "y_max", "z_max", "space", "label", "grade")


@dataclass
class PhantomCase:
    """One generated case. Images are SimpleITK with identical geometry; ``tissue`` and ``instances`` are
    numpy (z, y, x) arrays: the noise-free tissue class map (:data:`TISSUES`) and the per-fracture
    ground truth (k = 1..K in ``fractures`` order)."""

    case_id: str
    image: sitk.Image
    mask: sitk.Image
    vertebrae: sitk.Image
    boxes: list[VoxelBox]
    fractures: list[dict]
    visible: list[str]
    partial: list[str]
    tissue: np.ndarray = field(repr=False)
    instances: np.ndarray = field(repr=False)
    settings: dict = field(default_factory=dict)

    def to_case_record(self) -> CaseRecord:
        return CaseRecord(case_id=self.case_id, image=self.image, boxes=list(self.boxes), mask=self.mask,
                          vertebrae=self.vertebrae, source=f"phantom:{self.case_id}")

    def describe(self) -> dict:
        return {"case_id": self.case_id, "size": list(self.image.GetSize()),
                "spacing": list(self.image.GetSpacing()), "origin": list(self.image.GetOrigin()),
                "vertebrae": self.visible, "partial_vertebrae": self.partial, "fracture_free": not self.fractures,
                **self.settings, "fractures": self.fractures}


def case_id(case_index: int) -> str:
    return f"phantom_{case_index:03d}"


def is_fractured(case_index: int, seed: int) -> bool:
    """Exactly one case of each block of five (never its first) is fracture-free."""
    block, pos = divmod(case_index, 5)
    normal_pos = int(np.random.default_rng([seed, block, 7]).integers(1, 5))
    return pos != normal_pos


def _check_spacing(spacing) -> tuple[float, float, float]:
    if spacing is None:
        return DEFAULT_SPACING
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be three positive numbers (mm), got {spacing!r}")
    return sp  # type: ignore[return-value]


def _image(arr: np.ndarray, grid) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(grid.spacing)
    img.SetOrigin(grid.origin)
    return img


def _box(instances: np.ndarray, k: int, rng: np.random.Generator, label: str, grade: int) -> VoxelBox:
    zz, yy, xx = np.nonzero(instances == k)
    lo_m = rng.integers(BOX_MARGIN_VOXELS[0], BOX_MARGIN_VOXELS[1] + 1, size=3)
    hi_m = rng.integers(BOX_MARGIN_VOXELS[0], BOX_MARGIN_VOXELS[1] + 1, size=3)
    size = instances.shape[::-1]
    lo = [max(int(c.min()) - int(m), 0) for c, m in zip((xx, yy, zz), lo_m)]
    hi = [min(int(c.max()) + int(m), n - 1) for c, m, n in zip((xx, yy, zz), hi_m, size)]
    return VoxelBox(lo=tuple(lo), hi=tuple(hi), label=label, grade=grade)  # type: ignore[arg-type]


def generate_case(case_index: int, seed: int, spacing: Optional[tuple[float, float, float]] = None,
                  noise: bool = True, blur: bool = True, fractured: Optional[bool] = None,
                  contrast: str = "standard") -> PhantomCase:
    """Generate one case in memory.

    Args:
        case_index, seed: select the case; the same pair always gives the same case.
        spacing: voxel spacing (x, y, z) in mm; default 1.5 mm isotropic. The anatomy does not depend on it.
        noise: add trabecular texture and CT noise (False: noise-free, for checking intensities).
        blur: apply the scanner point-spread function (False: partial volume only).
        fractured: force the case's status; default follows :func:`is_fractured`.
        contrast: how visible fractures are and what their ground truth covers, a key of
            :data:`~nnunet_fracture.dataset_conversion.phantom_fractures.CONTRASTS` (``standard`` or ``subtle``).
    """
    if case_index < 0 or seed < 0:
        raise ValueError(f"case_index and seed must be >= 0, got {case_index} and {seed}")
    spacing = _check_spacing(spacing)
    _check_contrast(contrast)
    geo = np.random.default_rng([seed, case_index, 0])
    spine = sample_spine(geo)
    run, grid = field_of_view(spine, geo, spacing)
    n_vox = int(np.prod(grid.size))
    if n_vox > MAX_VOXELS:
        raise ValueError(f"spacing {spacing} gives {n_vox} voxels per case (limit {MAX_VOXELS}); use a coarser one")
    fractured = is_fractured(case_index, seed) if fractured is None else fractured
    fractures = sample_fractures(geo, spine, run, fractured, contrast)
    vol = render_anatomy(spine, grid)
    instances = render_fractures(vol, spine, grid, fractures, contrast)

    img_rng = np.random.default_rng([seed, case_index, 1])
    psf_mm, noise_hu = img_rng.uniform(*PSF_SIGMA_MM), img_rng.uniform(*NOISE_SIGMA_HU)
    sigma_vox = np.array(spacing[::-1], dtype=float)  # numpy (z, y, x) order
    hu = vol.hu
    if noise:
        tex = ndimage.gaussian_filter(img_rng.standard_normal(grid.shape, dtype=np.float32), 0.6 / sigma_vox)
        hu += vol.cancellous * tex * (TEXTURE_HU / max(float(tex.std()), 1e-6))
    if blur:
        hu = ndimage.gaussian_filter(hu, psf_mm / sigma_vox, mode="nearest")
    if noise:
        n = ndimage.gaussian_filter(img_rng.standard_normal(grid.shape, dtype=np.float32), 0.5)
        hu += n * (noise_hu / max(float(n.std()), 1e-6))
    ct = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    box_rng = np.random.default_rng([seed, case_index, 2])
    boxes, described = [], []
    visibility = fracture_contrast(ct, instances, vol.vertebrae, vol.tissue,
                                   [VERSE_LABELS[fr.vertebra] for fr in fractures])
    for k, (fr, seen) in enumerate(zip(fractures, visibility), start=1):
        box = _box(instances, k, box_rng, fr.vertebra, fr.grade)
        boxes.append(box)
        described.append({**fr.describe(), "label": VERSE_LABELS[fr.vertebra],
                          "mask_voxels": int((instances == k).sum()), **seen,
                          "box": {"lo": list(box.lo), "hi": list(box.hi), "space": "voxel"}})
    present = set(np.unique(vol.vertebrae).tolist())
    partial = [n for n, lab in VERSE_LABELS.items() if lab in present and n not in run]
    settings = {"contrast": contrast, "psf_sigma_mm": round(float(psf_mm), 4), "noise_sigma_hu": round(float(noise_hu), 3) if noise else 0.0,
                "hu": {k: round(float(v), 2) for k, v in spine.hu.items()}}
    return PhantomCase(case_id=case_id(case_index), image=_image(ct, grid),
                       mask=_image((instances > 0).astype(np.uint8), grid), vertebrae=_image(vol.vertebrae, grid),
                       boxes=boxes, fractures=described, visible=run, partial=partial, tissue=vol.tissue,
                       instances=instances, settings=settings)


def _check_contrast(contrast: str) -> None:
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {', '.join(CONTRASTS)}, got {contrast!r}")


def write_phantom(out_dir: Path, n_cases: int, seed: int, spacing: tuple[float, float, float] | None = None,
                  overwrite: bool = False, contrast: str = "standard") -> Path:
    """Write ``n_cases`` phantom cases in the generic input format under ``out_dir``; return ``out_dir``.

    The folder appears atomically (written beside it, then renamed). An existing ``out_dir`` is refused
    unless ``overwrite`` is true.
    """
    if isinstance(n_cases, bool) or int(n_cases) != n_cases or n_cases < 1:
        raise ValueError(f"n_cases must be an integer >= 1, got {n_cases!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    n_cases, seed = int(n_cases), int(seed)
    spacing = _check_spacing(spacing)
    _check_contrast(contrast)
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass --overwrite (overwrite=True) to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for sub in ("images", "masks", "vertebrae"):
            (tmp / sub).mkdir(parents=True)
        described, rows = [], []
        for i in tqdm(range(n_cases), desc="phantom", unit="case"):
            case = generate_case(i, seed, spacing, contrast=contrast)
            for sub, img in (("images", case.image), ("masks", case.mask), ("vertebrae", case.vertebrae)):
                write_image(img, tmp / sub / f"{case.case_id}.nii.gz")
            rows += [[case.case_id, *b.lo, *b.hi, "voxel", b.label, b.grade] for b in case.boxes]
            described.append(case.describe())
        with open(tmp / "boxes.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(BOXES_HEADER)
            writer.writerows(rows)
        meta = {"generator": "nnunet_fracture.dataset_conversion.phantom", "version": PHANTOM_VERSION,
                "seed": seed, "n_cases": n_cases, "spacing": list(spacing),
                "settings": {"fov_xy_mm": FOV_XY_MM, "noise_sigma_hu": list(NOISE_SIGMA_HU),
                             "psf_sigma_mm": list(PSF_SIGMA_MM), "texture_hu": TEXTURE_HU,
                             "box_margin_voxels": list(BOX_MARGIN_VOXELS), "vertebra_labels": VERSE_LABELS,
                             "tissues": list(TISSUES), "ct_dtype": "int16", "box_space": "voxel",
                             "contrast": contrast, "contrast_preset": asdict(CONTRASTS[contrast])},
                "fracture_contrast": contrast_by_kind([f for case in described for f in case["fractures"]]),
                "cases": described}
        (tmp / "phantom.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
