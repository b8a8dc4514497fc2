"""Output folders written as a whole: refuse to clobber (or to replace an input), then swap a completed staging
folder into place. Used by ``pseudo-masks``, ``fuse``, ``attention-maps``, ``evaluate`` and ``visualize``."""
from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence


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


@contextmanager
def staged_folder(out: Path, overwrite: bool, inputs: Sequence[Optional[Path]] = ()) -> Iterator[Path]:
    """Write a whole output folder or nothing.

    Refuses ``out`` up front (:func:`check_output_folder`, :func:`check_output_not_an_input` for the given
    ``inputs``), yields a hidden staging folder next to it, and swaps that into place when the block ends without
    an error; on an error the staging folder is deleted and ``out`` keeps what it held.
    """
    out = Path(out)
    check_output_folder(out, overwrite)
    check_output_not_an_input(out, [Path(p) for p in inputs if p is not None])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
