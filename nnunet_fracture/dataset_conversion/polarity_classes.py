"""Fracture masks split by lesion polarity into two nnU-Net classes: dense (1) and lucent (2).

A vertebral fracture shows on CT either as bone denser than the bone around it (the sclerotic condensation band
of a wedge or compression fracture) or as a void in it (an intravertebral cleft, Kümmell's disease: gas or fluid).
The two look opposite, and a cleft is thin. With one foreground class, nnU-Net's foreground oversampling centres a
patch on a voxel drawn from the case's fracture voxels, so the bulky bands are drawn far more often than the thin
clefts, and one Dice term pools both. With two classes, nnU-Net 2.8's ``nnUNetDataLoader`` first picks one of the
classes present in the case at random, then a voxel of it, and its Dice loss scores each class on its own.

No annotation is added: each 26-connected component of a mask gets its class from the CT itself, by comparing
its median HU with the median HU of a shell around it (:func:`polarity_classes`). A model trained on such a dataset
has one softmax channel per class; :mod:`nnunet_fracture.io.probability_files` reads its fracture probability as
1 - P(background), and every label above 0 of its segmentation is fracture.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunet_fracture.dataset_conversion.dataset_folders import dataset_folder_name, staged_dataset
from nnunet_fracture.io.verified_writes import write_image

DENSE, LUCENT = 1, 2
LABELS = {"background": 0, "dense": DENSE, "lucent": LUCENT}
CONNECTIVITY = 26  # a fracture component, as nnunet-fracture postprocess counts them


def polarity_classes(mask: np.ndarray, hu: np.ndarray, shell_voxels: int = 2) -> np.ndarray:
    """``mask``'s foreground as uint8 classes: :data:`DENSE` where a 26-connected component's median HU is above the
    median HU of the shell around it (the component dilated by ``shell_voxels`` voxels in 26-connectivity, less the
    mask) or where it has no shell (the mask fills the image around it), :data:`LUCENT` otherwise; 0 elsewhere.

    Raises:
        ValueError: ``mask`` and ``hu`` differ in shape, or ``shell_voxels`` < 1.
    """
    import cc3d

    if mask.shape != hu.shape:
        raise ValueError(f"mask shape {mask.shape} and image shape {hu.shape} differ")
    if not isinstance(shell_voxels, int) or shell_voxels < 1:
        raise ValueError(f"shell_voxels must be an integer >= 1, got {shell_voxels!r}")
    foreground = mask > 0
    components = cc3d.connected_components(foreground, connectivity=CONNECTIVITY)
    out = np.zeros(mask.shape, dtype=np.uint8)
    ball = ndimage.generate_binary_structure(3, 3)
    for label, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - shell_voxels, 0), s.stop + shell_voxels) for s in box)
        component = components[grown] == label
        shell = ndimage.binary_dilation(component, ball, iterations=shell_voxels) & ~foreground[grown]
        region_hu = hu[grown]
        dense = not shell.any() or np.median(region_hu[component]) > np.median(region_hu[shell])
        out[grown][component] = DENSE if dense else LUCENT
    return out


def write_polarity_dataset(source: Path, dataset_id: int, name: str, raw_root: Path, shell_voxels: int = 2,
                           overwrite: bool = False) -> Path:
    """A copy of the raw dataset ``source`` (binary fracture labels) as ``raw_root/DatasetXXX_NAME`` with its labels
    split by :func:`polarity_classes` (channel 0 of each case is the CT in HU); every other file is copied. Written
    in a staging folder and installed whole; ``dataset.json`` records the classes' component and voxel counts.

    Raises:
        ValueError: naming ``source``'s dataset.json, when its labels are not ``{background: 0, fracture: 1}``.
        FileNotFoundError: a case's image is missing.
    """
    import cc3d

    source = Path(source)
    meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    if meta.get("labels") != {"background": 0, "fracture": 1}:
        raise ValueError(f"{source / 'dataset.json'}: labels {meta.get('labels')}; polarity classes split a binary "
                         f"fracture mask. Fix: pass a dataset written by `nnunet-fracture convert --weak mask`")
    ending = meta["file_ending"]
    counts = {"dense": [0, 0], "lucent": [0, 0]}  # components, voxels
    with staged_dataset(Path(raw_root), dataset_id, name, overwrite) as tmp:
        for item in source.iterdir():
            if item.name not in ("labelsTr", "dataset.json"):
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        (tmp / "labelsTr").mkdir()
        for label_file in sorted((source / "labelsTr").glob(f"*{ending}")):
            case = label_file.name[:-len(ending)]
            image_file = source / "imagesTr" / f"{case}_0000{ending}"
            if not image_file.is_file():
                raise FileNotFoundError(f"case {case}: {image_file} is missing; the dataset {source} is incomplete")
            label = sitk.ReadImage(str(label_file))
            classes = polarity_classes(sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(
                sitk.ReadImage(str(image_file))), shell_voxels)
            for kind, value in (("dense", DENSE), ("lucent", LUCENT)):
                counts[kind][0] += int(cc3d.connected_components(classes == value, connectivity=CONNECTIVITY,
                                                                 return_N=True)[1])
                counts[kind][1] += int((classes == value).sum())
            out = sitk.GetImageFromArray(classes)
            out.CopyInformation(label)
            write_image(out, tmp / "labelsTr" / label_file.name)
        meta["labels"] = dict(LABELS)
        meta["nnunet_fracture"] = {**meta.get("nnunet_fracture", {}), "polarity_classes": {
            "source": str(source), "shell_voxels": shell_voxels,
            **{kind: {"components": c, "voxels": v} for kind, (c, v) in counts.items()}}}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return Path(raw_root) / dataset_folder_name(dataset_id, name)
