"""The image file endings the plugin reads and writes (SimpleITK formats nnU-Net's ``SimpleITKIO`` handles), and
the split of a file name into its stem and ending."""
from __future__ import annotations

from typing import Optional

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")


def image_ending(name: str) -> Optional[str]:
    """The ending of :data:`IMAGE_ENDINGS` that ``name`` has (the longest match: ``.nii.gz`` before ``.nii``),
    else ``None``."""
    return next((e for e in IMAGE_ENDINGS if name.endswith(e) and len(name) > len(e)), None)


def image_stem(name: str) -> Optional[str]:
    """``name`` without its image ending, or ``None`` if it has none."""
    ending = image_ending(name)
    return name[: -len(ending)] if ending else None
