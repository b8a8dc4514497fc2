"""Checkpoints checked before nnU-Net unpickles them.

nnU-Net reads its checkpoints with ``torch.load(weights_only=False)``: pickle, which runs whatever a crafted file
asks. Where the plugin itself loads a model (``vae-error``, ``attention-maps``), each checkpoint is first read with
``torch.load(weights_only=True)`` and an allow-list of the few types an nnU-Net checkpoint holds besides tensors and
plain containers: numpy scalars and dtypes in its training log, numpy arrays in a trainer's extra state. A file that
loads this way holds nothing that can run code, so nnU-Net's own pickle read of the same bytes runs none either. A
file that needs anything else is refused with a one-line error, unless the caller passes ``trust=True``
(``--trust-checkpoints``), which skips the check with a warning: stock nnU-Net's trust model.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _allowed_globals() -> list:
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    allowed = [multiarray.multiarray.scalar, multiarray.multiarray._reconstruct, np.ndarray, np.dtype]
    allowed += [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                                            np.uint8, np.uint16, np.uint32, np.uint64, np.bool_)]
    return allowed


class UntrustedCheckpointError(ValueError):
    """A checkpoint that holds more than tensors, plain containers and numpy values."""


def load_checkpoint(path: Path | str) -> dict:
    """``path`` read with ``weights_only=True`` and the allow-list, onto the CPU: nothing in it can run code.

    Raises:
        UntrustedCheckpointError: naming the file, the types it asks for and the fix, when it needs anything else.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # an old-format or damaged file: say so without the list
            unsafe = ["objects outside the allow-list"]
        raise UntrustedCheckpointError(
            f"{path}: the checkpoint asks pickle for {', '.join(unsafe)}, beyond the tensors, containers and numpy "
            f"values an nnU-Net checkpoint holds; loading it could run code from the file. Fix: use only model "
            f"folders you trust; if you trust this one, pass --trust-checkpoints.") from None


def verify_checkpoint(path: Path | str) -> None:
    """Read ``path`` as :func:`load_checkpoint` does; raise if it needs anything beyond the allow-list.

    Raises:
        UntrustedCheckpointError: naming the file, the types it asks for and the fix.
    """
    load_checkpoint(path)


def verify_checkpoints(paths: Sequence[Path], trust: bool) -> None:
    """:func:`verify_checkpoint` each of ``paths``, or (``trust``) print once that they are loaded unchecked."""
    if trust:
        print(f"nnunet-fracture: warning: --trust-checkpoints: {len(paths)} checkpoint(s) loaded with pickle, "
              f"unchecked (a crafted checkpoint can run code)", file=sys.stderr)
        return
    for path in paths:
        verify_checkpoint(path)
