"""Raw dataset folders under ``nnUNet_raw``: which exist for an ID, the hidden staging folder a conversion writes
into, installing it in one rename (replacing older datasets of the ID only with ``overwrite``), and what an
interrupted or renaming run leaves behind.

A conversion builds ``.DatasetXXX_NAME.partial-*`` and, with ``overwrite``, first moves an existing dataset of the
ID aside as ``.DatasetXXX_OLD.old-*``. A run killed between those two renames left no dataset at all, only hidden
folders that the next run neither cleaned up nor mentioned; :func:`recover_interrupted` now puts the old dataset
back (or removes leftovers whose replacement did land), and says so. Replacing a dataset under another name leaves
``nnUNet_preprocessed`` / ``nnUNet_results`` folders of the old name, and nnU-Net then refuses the ID ("More than
one dataset name found"); :func:`stale_derived_folders` names them for the warning.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import uuid
from pathlib import Path
from typing import Iterator

_LEFTOVER = re.compile(r"^\.(Dataset(\d{3})_[A-Za-z0-9_-]+)\.(old|partial)-[0-9a-f]{8}$")


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetXXX_NAME`` for a validated ID and name."""
    return f"Dataset{dataset_id:03d}_{name}"


def existing_datasets(raw_root: Path, dataset_id: int) -> list[Path]:
    """Folders ``DatasetXXX_*`` in ``raw_root`` that already use ``dataset_id`` (any name)."""
    if not raw_root.is_dir():
        return []
    return sorted(p for p in raw_root.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir())


def check_dataset_id_free(raw_root: Path, dataset_id: int, overwrite: bool, flag: str = "--overwrite") -> None:
    """Raise ``FileExistsError`` (with the fix) when ``dataset_id`` is taken under ``raw_root`` and
    ``overwrite`` is false."""
    old = existing_datasets(raw_root, dataset_id)
    if old and not overwrite:
        raise FileExistsError(f"dataset ID {dataset_id} is already used by {', '.join(str(p) for p in old)}. "
                              f"Fix: pass {flag} (overwrite=True) to replace it, or choose another ID.")


def leftovers(raw_root: Path, dataset_id: int) -> dict[str, list[Path]]:
    """Hidden ``old`` and ``partial`` folders of ``dataset_id`` left in ``raw_root`` by an interrupted run."""
    found: dict[str, list[Path]] = {"old": [], "partial": []}
    if raw_root.is_dir():
        for path in sorted(raw_root.iterdir()):
            match = _LEFTOVER.match(path.name)
            if match and int(match.group(2)) == dataset_id and path.is_dir():
                found[match.group(3)].append(path)
    return found


def recover_interrupted(raw_root: Path, dataset_id: int) -> list[str]:
    """Undo what an interrupted conversion of ``dataset_id`` left behind; one line per action (also printed).

    - A dataset moved aside by ``overwrite`` whose replacement never landed (no ``DatasetXXX_*`` of the ID now) is
      renamed back: the run it belonged to failed, so the old dataset is still the current one.
    - Moved-aside datasets whose replacement did land are the trash of a finished replacement: removed.
    - Staging folders (``.partial-*``) of a killed run hold an unfinished dataset: removed.
    """
    found, notes = leftovers(raw_root, dataset_id), []
    old = found["old"]
    if old and not existing_datasets(raw_root, dataset_id):
        newest = max(old, key=lambda p: p.stat().st_mtime)
        target = raw_root / _LEFTOVER.match(newest.name).group(1)
        os.replace(newest, target)
        old.remove(newest)
        notes.append(f"restored {target} (an earlier --overwrite run was interrupted before its new dataset was "
                     f"in place)")
    for path in old + found["partial"]:
        shutil.rmtree(path, ignore_errors=True)
        notes.append(f"removed {path} (left by an interrupted run)")
    for note in notes:
        print(f"nnunet-fracture: {note}", file=sys.stderr)
    return notes


def stale_derived_folders(dataset_id: int, name: str) -> list[Path]:
    """``nnUNet_preprocessed`` / ``nnUNet_results`` folders of ``dataset_id`` under a name other than ``name``
    (where those variables are set): nnU-Net refuses an ID whose folders carry two names."""
    stale = []
    for variable in ("nnUNet_preprocessed", "nnUNet_results"):
        root = os.environ.get(variable)
        if root and Path(root).is_dir():
            stale += [p for p in sorted(Path(root).glob(f"Dataset{dataset_id:03d}_*"))
                      if p.is_dir() and p.name != dataset_folder_name(dataset_id, name)]
    return stale


def staging_folder(raw_root: Path, folder_name: str) -> Path:
    """Create the hidden work folder ``raw_root/.{folder_name}.partial-*`` (same file system as the target)."""
    raw_root.mkdir(parents=True, exist_ok=True)
    tmp = raw_root / f".{folder_name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def install_dataset(tmp: Path, target: Path, raw_root: Path, dataset_id: int, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``target``, replacing older datasets with this ID only if allowed."""
    check_dataset_id_free(raw_root, dataset_id, overwrite)
    old = existing_datasets(raw_root, dataset_id)
    moved: list[tuple[Path, Path]] = []
    try:
        for path in old:
            trash = raw_root / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, trash)
            moved.append((path, trash))
        os.replace(tmp, target)
    except BaseException:
        for path, trash in reversed(moved):
            os.replace(trash, path)
        raise
    for _, trash in moved:
        shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def staged_dataset(raw_root: Path, dataset_id: int, name: str, overwrite: bool) -> Iterator[Path]:
    """Yield a hidden work folder for dataset ``dataset_id``; install it as ``raw_root/DatasetXXX_NAME`` when the
    block succeeds, remove it when the block fails. What an interrupted earlier run left is recovered first
    (:func:`recover_interrupted`); a taken ID without ``overwrite`` fails before any write. After installing, a
    warning names ``nnUNet_preprocessed`` / ``nnUNet_results`` folders of the ID under another name."""
    folder_name = dataset_folder_name(dataset_id, name)
    recover_interrupted(raw_root, dataset_id)
    check_dataset_id_free(raw_root, dataset_id, overwrite)
    tmp = staging_folder(raw_root, folder_name)
    try:
        yield tmp
        install_dataset(tmp, raw_root / folder_name, raw_root, dataset_id, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stale = stale_derived_folders(dataset_id, name)
    if stale:
        print(f"nnunet-fracture: warning: {', '.join(str(p) for p in stale)} belong(s) to the dataset ID "
              f"{dataset_id} under another name, and nnU-Net refuses an ID with two names ('More than one dataset "
              f"name found'). Fix: rm -r {' '.join(str(p) for p in stale)} (data preprocessed or trained from the "
              f"replaced dataset), then nnUNetv2_plan_and_preprocess -d {dataset_id}.", file=sys.stderr)
