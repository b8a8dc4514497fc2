"""Output folders written as a whole: refuse to clobber (or to replace an input), then swap a completed staging
folder into place. Used by ``pseudo-masks``, ``fuse`` and ``attention-maps``."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Optional, Sequence


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Raise ``FileExistsError`` with the fix when ``out`` is a file, or a non-empty folder and not ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file. Fix: name a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} exists and is not empty. Fix: pass --overwrite to replace it, or choose "
                              f"another folder.")


def check_output_not_an_input(out: Path, inputs: Sequence[Path]) -> None:
    """Raise ``ValueError`` when ``out`` is, or contains, one of ``inputs`` (replacing it would destroy it)."""
    resolved = out.resolve()
    for path in inputs:
        path = path.resolve()
        if resolved == path or resolved in path.parents:
            raise ValueError(f"--out {out} is or contains the input {path}; replacing it would destroy the input. "
                             f"Fix: choose a separate output folder.")


def swap_in(tmp: Path, target: Path) -> Optional[Path]:
    """Rename ``tmp`` to ``target``; an existing ``target`` is first moved to a hidden folder, which is returned
    (and moved back if the rename fails)."""
    trash = None
    if target.exists():
        trash = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, trash)
    try:
        os.replace(tmp, target)
    except BaseException:
        if trash is not None:
            os.replace(trash, target)
        raise
    return trash


def replace_folder(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target`` and delete what ``target`` held before (when nothing else must follow)."""
    trash = swap_in(tmp, target)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
