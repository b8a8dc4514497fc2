"""Read the fracture probability from the ``.npz`` files ``nnUNetv2_predict --save_probabilities`` writes.

nnU-Net stores ``probabilities`` with one leading channel per output of the network, in the array order of
the original image (z, y, x for SimpleITK images):

- a label-based dataset (``labels: {background: 0, fracture: 1}``, e.g. ``--weak mask``) gives two softmax
  channels, and the fracture probability is channel 1;
- a region-based dataset (``labels: {background: 0, fracture: [1, 2, ...]}``, what ``convert --weak box`` and
  ``--weak slice`` write, one label value per box) gives one sigmoid channel, the fracture region;
- a dataset with several fracture classes (e.g. ``{background: 0, dense: 1, lucent: 2}``,
  :mod:`nnunet_fracture.dataset_conversion.polarity_classes`) gives one softmax channel per label, and the
  fracture probability is 1 - P(background), channel 0's complement.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

#: float32 softmax/sigmoid outputs may overshoot [0, 1] by rounding; anything beyond this is an error.
RANGE_TOLERANCE = 1e-6


def fracture_channel(num_channels: int, npz_file: Path, case: str) -> int:
    """Index of the channel to read in an nnU-Net probability array with ``num_channels`` channels: the fracture
    channel of a one- or two-channel model, the background channel (whose complement is the fracture
    probability) of a model with several fracture classes."""
    if num_channels == 1:
        return 0
    if num_channels == 2:
        return 1
    if num_channels > 2:
        return 0
    raise ValueError(f"case {case}: probabilities in {npz_file} have no channel. Fix: predict this case again with "
                     f"nnUNetv2_predict --save_probabilities")


def load_fracture_probability(npz_file: Path, case: str, shape: tuple[int, ...]) -> np.ndarray:
    """Fracture probability as float32, checked for shape and range (an overshoot of up to
    :data:`RANGE_TOLERANCE` is clipped to [0, 1]).

    Memory: only the fracture channel is ever held (about 4 bytes per voxel): the array is decompressed from
    the archive as a stream and the other channel's bytes are skipped, so a 2-channel 512 x 512 x 300 file
    needs 315 MB, not the 630 MB of both channels plus copies.

    Raises:
        ValueError: naming the file and case, when the array is missing, has the wrong shape or channel count,
            or holds values outside [0, 1] or non-finite values.
    """
    npz_file = Path(npz_file)
    fracture, num_channels = _read_fracture_channel(npz_file, case, tuple(shape))
    fracture = fracture.astype(np.float32, copy=False)
    if num_channels > 2:  # the background channel was read
        np.subtract(1.0, fracture, out=fracture)
    if not np.isfinite(fracture).all():
        raise ValueError(f"case {case}: probabilities in {npz_file} contain NaN or infinite values")
    low, high = float(fracture.min()), float(fracture.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(f"case {case}: probabilities in {npz_file} span [{low}, {high}], outside [0, 1]")
    return np.clip(fracture, 0.0, 1.0, out=fracture)


_STREAM_CHUNK = 1 << 24  # bytes decompressed at a time


def _check_shape(array_shape: tuple[int, ...], shape: tuple[int, ...], npz_file: Path, case: str) -> None:
    if len(array_shape) != len(shape) + 1 or tuple(array_shape[1:]) != tuple(shape):
        raise ValueError(f"case {case}: probabilities in {npz_file} have shape {tuple(array_shape)}, expected "
                         f"(channels, {', '.join(map(str, shape))})")


def _read_fracture_channel(npz_file: Path, case: str, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """The channel of ``probabilities`` that :func:`fracture_channel` names, and the number of channels, streamed
    out of the npz archive; anything unusual (not a zip, an npy format version or layout the stream reader does not
    handle) goes through ``np.load``."""
    missing = (f"case {case}: {npz_file} has no 'probabilities' array; it should come from "
               f"nnUNetv2_predict --save_probabilities")
    try:
        with zipfile.ZipFile(npz_file) as archive:
            if "probabilities.npy" not in archive.namelist():
                raise ValueError(missing)
            with archive.open("probabilities.npy") as stream:
                version = np.lib.format.read_magic(stream)
                if version not in ((1, 0), (2, 0)):
                    raise _Unsupported
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                array_shape, fortran_order, dtype = read_header(stream)
                if fortran_order or dtype.hasobject:
                    raise _Unsupported
                _check_shape(array_shape, shape, npz_file, case)
                channel = fracture_channel(array_shape[0], npz_file, case)
                channel_bytes = int(np.prod(array_shape[1:], dtype=np.int64)) * dtype.itemsize
                _skip(stream, channel * channel_bytes, npz_file, case)
                out = np.empty(array_shape[1:], dtype=dtype)
                _read_into(stream, out.reshape(-1).view(np.uint8), npz_file, case)
                return out, array_shape[0]
    except (zipfile.BadZipFile, _Unsupported):
        pass
    try:
        with np.load(npz_file) as data:
            if "probabilities" not in data:
                raise ValueError(missing)
            probabilities = data["probabilities"]
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"case {case}: {npz_file} is not a readable npz archive ({type(e).__name__}: {e}); it is "
                         f"truncated or corrupt. Fix: predict this case again with nnUNetv2_predict "
                         f"--save_probabilities") from None
    _check_shape(probabilities.shape, shape, npz_file, case)
    return probabilities[fracture_channel(probabilities.shape[0], npz_file, case)], probabilities.shape[0]


class _Unsupported(Exception):
    """The stream reader does not handle this npy layout; fall back to ``np.load``."""


def _skip(stream, n_bytes: int, npz_file: Path, case: str) -> None:
    while n_bytes > 0:
        chunk = stream.read(min(n_bytes, _STREAM_CHUNK))
        if not chunk:
            raise ValueError(f"case {case}: {npz_file} ends early; the file is truncated")
        n_bytes -= len(chunk)


def _read_into(stream, buffer: np.ndarray, npz_file: Path, case: str) -> None:
    position = 0
    while position < buffer.size:
        chunk = stream.read(min(buffer.size - position, _STREAM_CHUNK))
        if not chunk:
            raise ValueError(f"case {case}: {npz_file} ends early; the file is truncated")
        buffer[position:position + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        position += len(chunk)
