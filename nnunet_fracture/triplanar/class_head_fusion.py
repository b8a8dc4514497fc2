"""Class-head fusion: ``P_class x P`` voxel by voxel, with the classification head's probabilities read from a folder
of per-case maps (``<case>.nii.gz`` on a grid that maps onto the target) or a CSV ``case,probability``. Used by
``nnunet-fracture fuse`` (:mod:`nnunet_fracture.triplanar.plane_fusion`) after the plane fusion."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk

from nnunet_fracture.io.probability_files import RANGE_TOLERANCE
from nnunet_fracture.triplanar.grid_mapping import GridMappingError, map_to_grid
from nnunet_fracture.io.image_files import IMAGE_ENDINGS



def class_head_fusion(segmentation: np.ndarray, class_probability: np.ndarray | float) -> np.ndarray:
    """``P_class * P_seg`` voxel by voxel (``class_probability`` a map of the same shape or a scalar), float32."""
    seg = np.asarray(segmentation, dtype=np.float32)
    cls = np.asarray(class_probability, dtype=np.float32)
    if cls.ndim and cls.shape != seg.shape:
        raise ValueError(f"class probability map has shape {cls.shape}, the segmentation probability {seg.shape}")
    return seg * cls


def checked_probabilities(values: np.ndarray, where: str, fix: str) -> np.ndarray:
    """``values`` as float32 clipped to [0, 1]; raises naming ``where`` and ``fix`` for NaN, inf or values outside
    [0, 1] beyond the probability files' tolerance."""
    values = np.asarray(values, dtype=np.float32)
    if not np.isfinite(values).all():
        raise ValueError(f"{where} contains NaN or infinite values. Fix: {fix}")
    low, high = float(values.min()), float(values.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{where} spans [{low}, {high}], outside [0, 1]; probabilities are expected. Fix: {fix}")
    return np.clip(values, 0.0, 1.0)


class ClassProbability:
    """Per-case classification probabilities: a folder of maps ``<case>.nii.gz`` or a CSV ``case,probability``."""

    def __init__(self, source: Path | str, cases: Sequence[str]):
        self.source = Path(source).absolute()
        self.scalars: Optional[dict[str, float]] = None
        if self.source.is_file():
            self.scalars = self._read_csv(cases)
        elif self.source.is_dir():
            missing = [c for c in cases if self._map_file(c) is None]
            if missing:
                raise FileNotFoundError(
                    f"class-probability folder {self.source} has no map <case>.nii.gz for {len(missing)} case(s): "
                    f"{', '.join(missing[:10])}. Fix: write one class-probability map per predicted case, or pass a "
                    f"CSV with columns case,probability.")
        else:
            raise FileNotFoundError(f"class probabilities {self.source} do not exist. Fix: pass a folder of "
                                    f"<case>.nii.gz maps or a CSV file with columns case,probability.")

    @property
    def kind(self) -> str:
        return "per-case scalar (CSV)" if self.scalars is not None else "per-case map (image folder)"

    def _map_file(self, case: str) -> Optional[Path]:
        for ending in IMAGE_ENDINGS:
            path = self.source / f"{case}{ending}"
            if path.is_file():
                return path
        return None

    def _read_csv(self, cases: Sequence[str]) -> dict[str, float]:
        try:
            table = pd.read_csv(self.source, dtype={"case": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ValueError(f"class-probability file {self.source} is not a readable CSV ({e}). Fix: write a CSV "
                             f"with the header case,probability.") from None
        if not {"case", "probability"} <= set(table.columns):
            raise ValueError(f"class-probability file {self.source} has columns {list(table.columns)}; expected "
                             f"case,probability. Fix: name the columns case and probability.")
        duplicated = sorted(set(table["case"][table["case"].duplicated()]))
        if duplicated:
            raise ValueError(f"class-probability file {self.source} lists case(s) {', '.join(duplicated[:10])} more "
                             f"than once. Fix: keep one row per case.")
        scalars: dict[str, float] = {}
        for case, value in zip(table["case"], table["probability"]):
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not (math.isfinite(number) and -RANGE_TOLERANCE <= number <= 1 + RANGE_TOLERANCE):
                raise ValueError(f"class-probability file {self.source}: case {case} has probability {value!r}, not "
                                 f"a number in [0, 1]. Fix: write the classification head's sigmoid output.")
            scalars[str(case)] = min(max(number, 0.0), 1.0)
        missing = [c for c in cases if c not in scalars]
        if missing:
            raise ValueError(f"class-probability file {self.source} has no row for {len(missing)} case(s): "
                             f"{', '.join(missing[:10])}. Fix: add a row case,probability for every predicted case.")
        return scalars

    def load(self, case: str, grid: sitk.Image, resample: Optional[str]) -> tuple[np.ndarray | float, str]:
        """The case's class probability on ``grid`` (array order z, y, x) or as a scalar, and how it was mapped."""
        if self.scalars is not None:
            return self.scalars[case], "scalar"
        path = self._map_file(case)
        assert path is not None
        image = sitk.ReadImage(str(path))
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"case {case}: class-probability map {path} must be a 3D scalar image. Fix: write one "
                             f"probability per voxel.")
        fix = "write the classification head's probabilities (sigmoid outputs in [0, 1])"
        values = checked_probabilities(sitk.GetArrayFromImage(image), f"case {case}: class-probability map {path}", fix)
        try:
            return map_to_grid(values, image, grid, resample)
        except GridMappingError as e:
            raise ValueError(f"case {case}: class-probability map {path} cannot be mapped onto the target grid: {e}. "
                             f"Fix: write the map on the case image's grid{'' if resample else ', or pass --resample'}."
                             ) from None
