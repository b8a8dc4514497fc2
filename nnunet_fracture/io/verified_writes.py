"""Images and arrays written, then checked on disk before anyone relies on them.

SimpleITK does not raise on every failed write: under a file-size limit (``ulimit -f``) or on a full disk, a
compressed NIfTI can be cut short while ``WriteImage`` returns normally, and it then reads back as mostly zeros. So
every image and probability array the plugin writes goes through :func:`write_image` or :func:`save_npz`, which
read the file back: a gzip stream is decompressed to its end (its length and CRC checked), the NIfTI header must
promise exactly the voxels that were written, and every array of an ``.npz`` is decompressed (zip CRC) and its
shape compared. A file that fails raises :class:`IncompleteWriteError` (an ``OSError``) naming it, before the
staged output folder that holds it is moved into place.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Sequence
import zipfile

import numpy as np

_CHUNK = 1 << 22


class IncompleteWriteError(OSError):
    """A file that was written but does not hold what was written."""


def _incomplete(path: Path, what: str) -> IncompleteWriteError:
    return IncompleteWriteError(f"{path}: the file just written is incomplete ({what}); the disk may be full or a "
                                f"file-size limit (ulimit -f) reached. Fix: free space or raise the limit, then run "
                                f"again (nothing was moved into place).")


def _stream_length(path: Path) -> int:
    """Bytes of ``path`` after gzip decompression (raises ``IncompleteWriteError`` on a cut or corrupt stream)."""
    n = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                n += len(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        raise _incomplete(path, f"its gzip stream is broken: {exc}") from None
    return n


def verify_nifti(path: Path | str, size_xyz: Sequence[int]) -> None:
    """Check that the NIfTI ``path`` (``.nii`` or ``.nii.gz``) holds an image of ``size_xyz`` voxels in full.

    Raises:
        IncompleteWriteError: if the file is cut short, its gzip stream is corrupt, or its header describes
            another size.
    """
    import nibabel as nib

    path = Path(path)
    try:
        stored = nib.load(str(path))
        header, offset = stored.header, int(stored.dataobj.offset)  # (the header copy's own offset is reset to 0)
    except Exception as exc:  # nibabel raises several types on a short or garbled header
        raise _incomplete(path, f"its header cannot be read: {exc}") from None
    shape = tuple(int(n) for n in header.get_data_shape())
    expected_shape = tuple(int(n) for n in size_xyz)
    if shape[: len(expected_shape)] != expected_shape or any(n != 1 for n in shape[len(expected_shape):]):
        raise _incomplete(path, f"its header describes {shape} voxels, {expected_shape} were written")
    voxels = int(np.prod(shape)) * header.get_data_dtype().itemsize
    expected = offset + voxels
    length = _stream_length(path) if path.name.endswith(".gz") else path.stat().st_size
    if length < expected:
        raise _incomplete(path, f"{length} of {expected} bytes")


def write_image(image, path: Path | str, compress: bool = True) -> None:
    """``SimpleITK.WriteImage`` followed by a check of the file on disk.

    NIfTI files are checked byte by byte (:func:`verify_nifti`); other formats are read back in full and their
    size compared.

    Raises:
        IncompleteWriteError: naming ``path``, if the file does not hold the image.
    """
    import SimpleITK as sitk

    path = Path(path)
    sitk.WriteImage(image, str(path), compress)
    if path.name.endswith((".nii", ".nii.gz")):
        verify_nifti(path, image.GetSize())
        return
    try:
        size = sitk.ReadImage(str(path)).GetSize()
    except RuntimeError as exc:
        raise _incomplete(path, f"it cannot be read back: {str(exc).strip().splitlines()[-1]}") from None
    if size != image.GetSize():
        raise _incomplete(path, f"it reads back as {size} voxels, {image.GetSize()} were written")


def save_npz(path: Path | str, **arrays: np.ndarray) -> None:
    """``numpy.savez_compressed`` followed by a read-back of every array (zip CRC and shape).

    Raises:
        IncompleteWriteError: naming ``path``, if an array is missing, cut short or of another shape.
    """
    path = Path(path)
    try:
        np.savez_compressed(path, **arrays)
    except OSError as exc:  # numpy's own error names no file
        raise _incomplete(path, exc.strerror or str(exc)) from None
    try:
        with np.load(path) as stored:
            for name, array in arrays.items():
                if stored[name].shape != np.shape(array):
                    raise _incomplete(path, f"array {name!r} reads back as {stored[name].shape}, "
                                            f"{np.shape(array)} was written")
    except IncompleteWriteError:
        raise
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise _incomplete(path, f"it cannot be read back: {exc}") from None
