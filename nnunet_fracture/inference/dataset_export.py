"""Write pseudo-masks as a new nnU-Net raw dataset: the data flywheel's next training set.

Layout of ``$nnUNet_raw/DatasetXXX_NAME``::

    imagesTr/<case>_XXXX<ending>   every channel, copied byte for byte from the source dataset
    labelsTr/<case><ending>        the pseudo-mask, uint8 {0, 1} (and 2 = ignore with an ignore band), on the image's grid
    boxes.json                     copied from the source dataset
    groundTruthTr/, vertebraeTr/   copied per case where the source has them (evaluation only)
    dataset.json                   channel_names and file_ending of the source, labels {background: 0,
                                   fracture: 1} (a plain label-based dataset: the stock nnUNetTrainer trains on it
                                   fully supervised), numTraining, and an "nnunet_fracture" block with weak "pseudo"
    pseudo_masks.json              the provenance of the pseudo-masks (also inside dataset.json)

Written like ``nnunet-fracture convert`` writes: in a hidden ``.DatasetXXX_NAME.partial-*`` folder inside
``nnUNet_raw``, renamed into place only when complete (replacing a dataset with the same ID only with
``overwrite``).
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from nnunet_fracture.dataset_conversion.case import CASE_ID_PATTERN
from nnunet_fracture.dataset_conversion.dataset_folders import (check_dataset_id_free, dataset_folder_name,
                                                                  install_dataset, recover_interrupted, staging_folder)
from nnunet_fracture.dataset_conversion.source_dataset import SourceDataset
from nnunet_fracture.io.verified_writes import write_image

IGNORE_LABEL = 2
IGNORE_MEANING = ("2 = ignore: a box voxel left out of the pseudo-mask whose probability is in the uncertain band "
                  "(see pseudo_masks.json); nnU-Net's ignore label, masked out of the stock losses")
LABEL_MEANING = ("1 = pseudo-mask (model probability selected inside a box, see pseudo_masks.json), 0 = elsewhere; "
                 "meant to be checked and corrected by a human before training the strong model")


class DatasetExport:
    """Builds the exported dataset case by case in a hidden folder; :meth:`install` puts it in place.

    Args:
        dataset_id: nnU-Net ID of the new dataset (1-999), different from the source's.
        name: dataset name (letters, digits, ``_``, ``-``).
        source: the dataset the pseudo-masks were made from.
        overwrite: replace an existing dataset with this ID (any name) once the new one is complete.
        raw_root: where to write; default ``$nnUNet_raw``.
        with_ignore: the labels also hold nnU-Net's ignore label (:data:`IGNORE_LABEL`, declared ``"ignore"`` in
            dataset.json, which nnU-Net requires to be the highest label).

    Raises:
        ValueError: bad ID or name, or the ID of the source dataset itself.
        FileExistsError: the ID is taken and ``overwrite`` is false (checked before anything is written).
    """

    def __init__(self, dataset_id: int, name: str, source: SourceDataset, overwrite: bool = False,
                 raw_root: Optional[Path | str] = None, with_ignore: bool = False) -> None:
        if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, np.integer)) or not 1 <= dataset_id <= 999:
            raise ValueError(f"export dataset id must be an integer from 1 to 999, got {dataset_id!r}. Fix: pick a "
                             f"free number, e.g. --export-dataset 502.")
        if not isinstance(name, str) or not CASE_ID_PATTERN.match(name):
            raise ValueError(f"export dataset name {name!r} is not allowed: use letters, digits, '_' and '-' only. "
                             f"Fix: e.g. --name PhantomPseudo.")
        if raw_root is None:
            from nnunet_fracture.environment import nnunet_folder

            raw_root = nnunet_folder("nnUNet_raw")
        self.raw_root = Path(raw_root).absolute()
        self.dataset_id = int(dataset_id)
        if source.dataset_id == self.dataset_id and source.folder.parent.resolve() == self.raw_root.resolve():
            raise ValueError(f"--export-dataset {dataset_id} is the ID of the source dataset {source.folder}; "
                             f"exporting would replace the boxes the pseudo-masks come from. Fix: choose a free ID.")
        recover_interrupted(self.raw_root, self.dataset_id)
        check_dataset_id_free(self.raw_root, self.dataset_id, overwrite)
        self.source = source
        self.overwrite = overwrite
        self.with_ignore = with_ignore
        self.folder_name = dataset_folder_name(self.dataset_id, name)
        self.target = self.raw_root / self.folder_name
        self.tmp: Optional[Path] = None
        self.cases: list[str] = []

    def start(self) -> None:
        """Create the hidden work folder."""
        self.tmp = staging_folder(self.raw_root, self.folder_name)
        for sub in ("imagesTr", "labelsTr"):
            (self.tmp / sub).mkdir()

    def add_case(self, case: str, mask: sitk.Image) -> None:
        """Copy the case's images (and ground truth / vertebra map where present) and write its label."""
        assert self.tmp is not None, "start() first"
        ending = self.source.file_ending
        for channel in self.source.channels:
            image = self.source.image_file(case, channel)
            if not image.is_file():
                raise FileNotFoundError(f"case {case}: channel {channel} image {image} does not exist, but "
                                        f"{self.source.folder / 'dataset.json'} lists channel {channel}. Fix: restore "
                                        f"the source dataset's imagesTr.")
            shutil.copyfile(image, self.tmp / "imagesTr" / image.name)
        write_image(mask, self.tmp / "labelsTr" / f"{case}{ending}")
        for sub in ("groundTruthTr", "vertebraeTr"):
            extra = self.source.folder / sub / f"{case}{ending}"
            if extra.is_file():
                (self.tmp / sub).mkdir(exist_ok=True)
                shutil.copyfile(extra, self.tmp / sub / extra.name)
        self.cases.append(case)

    def dataset_json(self, provenance: dict) -> dict:
        from nnunet_fracture import __version__

        meta = self.source.meta
        block = {
            "plugin_version": __version__,
            "weak": "pseudo",
            "label_meaning": LABEL_MEANING + ("; " + IGNORE_MEANING if self.with_ignore else ""),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source_dataset": str(self.source.folder),
            "source_provenance": meta.get("nnunet_fracture"),
            "num_boxes": sum(len(self.source.boxes[c]) for c in self.cases),
            "pseudo_masks": provenance,
            "ground_truth": "groundTruthTr (evaluation only; never used for training)",
            "vertebrae": "vertebraeTr",
        }
        out = {
            "name": self.folder_name,
            "description": f"Pseudo-masks from {self.source.folder.name} (rule {provenance.get('rule')}), written by "
                           f"nnunet_fracture",
            "channel_names": meta["channel_names"],
            "labels": {"background": 0, "fracture": 1, **({"ignore": IGNORE_LABEL} if self.with_ignore else {})},
            "numTraining": len(self.cases),
            "file_ending": self.source.file_ending,
            "nnunet_fracture": block,
        }
        if "overwrite_image_reader_writer" in meta:
            out["overwrite_image_reader_writer"] = meta["overwrite_image_reader_writer"]
        return out

    def finish(self, provenance: dict) -> None:
        """Write boxes.json, dataset.json and pseudo_masks.json into the work folder."""
        assert self.tmp is not None, "start() first"
        boxes = {case: self.source.boxes[case] for case in self.cases}
        (self.tmp / "boxes.json").write_text(json.dumps(boxes, indent=1))
        (self.tmp / "dataset.json").write_text(json.dumps(self.dataset_json(provenance), indent=2))
        (self.tmp / "pseudo_masks.json").write_text(json.dumps(provenance, indent=2))

    def install(self) -> Path:
        """Rename the finished work folder into place (see :func:`dataset_folders.install_dataset`)."""
        assert self.tmp is not None, "start() first"
        install_dataset(self.tmp, self.target, self.raw_root, self.dataset_id, self.overwrite)
        self.tmp = None
        return self.target

    def discard(self) -> None:
        """Remove the work folder (after an error)."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
