"""The raw dataset that predictions were made from: its boxes, images and ``dataset.json``.

Pseudo-masks need every case's boxes (``boxes.json``, written by ``nnunet-fracture convert``) and the case
image's geometry (``imagesTr/<case>_0000<file_ending>``). A dataset is named by its nnU-Net ID (looked up in
``$nnUNet_raw``), its folder name ``DatasetXXX_NAME`` (in ``$nnUNet_raw``) or a path to its folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nnunet_fracture.dataset_conversion.box_geometry import check_box
from nnunet_fracture.dataset_conversion.case import VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import read_boxes_json
from nnunet_fracture.io.json_files import read_json_object

_DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_")


def dataset_id_and_name(folder_name: str) -> tuple[int | None, str]:
    """``(ID, NAME)`` of an nnU-Net dataset folder name ``DatasetXXX_NAME``; ``(None, folder_name)`` for another name."""
    match = _DATASET_FOLDER.match(folder_name)
    return (int(match.group(1)), folder_name[match.end():]) if match else (None, folder_name)


def resolve_dataset_folder(dataset: str | int | Path) -> Path:
    """The folder of ``dataset``: an integer ID or ``DatasetXXX_NAME`` under ``$nnUNet_raw``, or a path.

    Raises:
        FileNotFoundError: nothing found (the message says where it looked and how to fix it).
        ValueError: several datasets share the ID.
        nnunet_fracture.environment.EnvironmentNotConfigured: an ID or name was given and ``nnUNet_raw`` is unset.
    """
    from nnunet_fracture.dataset_conversion.dataset_folders import existing_datasets
    from nnunet_fracture.environment import nnunet_folder

    text = str(dataset)
    if isinstance(dataset, int) or text.isdigit():
        raw_root = nnunet_folder("nnUNet_raw")
        found = existing_datasets(raw_root, int(text))
        if not found:
            raise FileNotFoundError(f"no dataset with ID {int(text)} in nnUNet_raw={raw_root}. Fix: pass the ID of "
                                    f"the dataset the predictions were made from, or its folder.")
        if len(found) > 1:
            raise ValueError(f"dataset ID {int(text)} is used by several folders: "
                             f"{', '.join(str(p) for p in found)}. Fix: pass the folder instead of the ID.")
        return found[0]
    path = Path(text)
    if not path.is_dir() and _DATASET_FOLDER.match(text) and len(path.parts) == 1:
        path = nnunet_folder("nnUNet_raw") / text
    if not path.is_dir():
        raise FileNotFoundError(f"dataset folder {path} does not exist. Fix: pass a dataset ID (e.g. 501) or the "
                                f"folder written by `nnunet-fracture convert`.")
    return path


@dataclass(frozen=True)
class BoxEntry:
    """One box of ``boxes.json``: its number, voxel box and label."""

    box_id: int
    box: VoxelBox
    label: str

    @property
    def region(self) -> tuple[slice, slice, slice]:
        """Numpy index ``(k, j, i)`` of the box's voxels in an array read with SimpleITK."""
        (i0, j0, k0), (i1, j1, k1) = self.box.lo, self.box.hi
        return slice(k0, k1 + 1), slice(j0, j1 + 1), slice(i0, i1 + 1)


@dataclass
class SourceDataset:
    """A raw dataset written by ``nnunet-fracture convert`` (it must hold ``boxes.json``)."""

    folder: Path
    meta: dict
    boxes: dict[str, list[dict]]

    @classmethod
    def open(cls, dataset: str | int | Path) -> "SourceDataset":
        folder = resolve_dataset_folder(dataset).absolute()
        boxes_file, meta_file = folder / "boxes.json", folder / "dataset.json"
        if not boxes_file.is_file():
            raise FileNotFoundError(f"{boxes_file} does not exist, so the dataset {folder} was not written by "
                                    f"`nnunet-fracture convert` and its boxes are unknown. Fix: convert the CT and "
                                    f"boxes with `nnunet-fracture convert` and predict from that dataset.")
        if not meta_file.is_file():
            raise FileNotFoundError(f"{meta_file} does not exist. Fix: pass a complete nnU-Net raw dataset.")
        meta, boxes = read_json_object(meta_file), read_boxes_json(boxes_file)
        for key in ("channel_names", "file_ending"):
            if key not in meta:
                raise ValueError(f"{meta_file} has no '{key}'. Fix: pass a dataset written by `nnunet-fracture "
                                 f"convert`.")
        if not boxes:
            raise ValueError(f"{boxes_file} lists no case. Fix: convert a dataset with at least one case.")
        return cls(folder, meta, boxes)

    @property
    def boxes_file(self) -> Path:
        return self.folder / "boxes.json"

    @property
    def file_ending(self) -> str:
        return self.meta["file_ending"]

    @property
    def channels(self) -> list[int]:
        return sorted(int(c) for c in self.meta["channel_names"])

    @property
    def dataset_id(self) -> int | None:
        return dataset_id_and_name(self.folder.name)[0]

    @property
    def cases(self) -> list[str]:
        return sorted(self.boxes)

    def image_file(self, case: str, channel: int = 0) -> Path:
        return self.folder / "imagesTr" / f"{case}_{channel:04d}{self.file_ending}"

    def vertebra_file(self, case: str) -> Path:
        """The case's vertebra label map (``vertebraeTr``, written by ``convert`` where the source has one)."""
        return self.folder / "vertebraeTr" / f"{case}{self.file_ending}"

    def case_boxes(self, case: str, size: tuple[int, ...]) -> list[BoxEntry]:
        """The boxes of ``case``, checked to lie inside an image of ``size`` (i, j, k)."""
        entries = []
        for n, entry in enumerate(self.boxes[case], start=1):
            where = f"{self.boxes_file}, case {case}, box {n}"
            try:
                lo = tuple(int(v) for v in entry["lo"])
                hi = tuple(int(v) for v in entry["hi"])
                box_id = int(entry.get("box_id", n))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{where}: expected an object with 'lo' and 'hi' (3 voxel indices each), got "
                                 f"{entry!r}. Fix: rewrite boxes.json with `nnunet-fracture convert`.") from None
            box = VoxelBox(lo, hi, str(entry.get("label") or ""), entry.get("grade"))
            check_box(box, size, where)
            entries.append(BoxEntry(box_id, box, box.label))
        return entries
