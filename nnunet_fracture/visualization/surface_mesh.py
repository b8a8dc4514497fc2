"""Iso-surfaces of a volume in world coordinates, written as binary STL or ASCII PLY for 3D Slicer.

Coordinates: millimetres in the image's physical frame as SimpleITK reports it, which is LPS (x towards the
patient's left, y posterior, z superior). The files say so the way 3D Slicer reads it: ``SPACE=LPS`` in the STL
header and a ``comment SPACE=LPS`` line in the PLY header. Slicer (4.11 and later) honours that tag and, even
without it, assumes LPS for mesh files, so the surfaces load on top of the CT. Triangles are wound
counter-clockwise seen from outside (the STL normals point outwards).

The surface is scikit-image's marching cubes (Lewiner) on the volume padded by one voxel of "outside", so
regions touching the volume's border are closed; vertices are then mapped index -> world with the grid's
origin, spacing and direction.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk
from skimage import measure

from nnunet_fracture.dataset_conversion.box_geometry import index_to_physical

COORDINATE_TAG = "SPACE=LPS"
MESH_FORMATS = ("stl", "ply")
_STL_HEADER_BYTES = 80
_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])


@dataclass
class Mesh:
    """A triangle surface: ``vertices`` (n, 3) in world mm (LPS), ``faces`` (m, 3) vertex indices."""

    vertices: np.ndarray
    faces: np.ndarray

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0

    def triangles(self) -> np.ndarray:
        """(m, 3, 3): the corner coordinates of every face."""
        return self.vertices[self.faces]

    def face_normals(self) -> np.ndarray:
        """Unit normals (m, 3) from the winding (right-hand rule); zero for degenerate faces."""
        t = self.triangles()
        n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        length = np.linalg.norm(n, axis=1, keepdims=True)
        return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def empty_mesh() -> Mesh:
    return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))


def surface_mesh(volume: np.ndarray, level: float, grid: sitk.Image, step: int = 1) -> Mesh:
    """The surface around the voxels with ``volume >= level``, in world coordinates.

    Args:
        volume: array indexed (z, y, x) on ``grid`` (a probability map, a CT, or a 0/1 mask with level 0.5).
        level: iso-value; must lie strictly between the volume's values inside and outside.
        grid: the SimpleITK image whose index -> world map applies (only its geometry is used).
        step: marching-cubes step in voxels (> 1 gives a coarser, smaller surface).

    Returns:
        The mesh; empty when no voxel reaches ``level``.
    """
    if tuple(volume.shape) != tuple(reversed(grid.GetSize())):
        raise ValueError(f"volume shape {volume.shape} does not match the grid size {grid.GetSize()} (x, y, z)")
    if step < 1:
        raise ValueError(f"marching-cubes step must be >= 1, got {step}")
    inside = volume >= level
    if not inside.any():
        return empty_mesh()
    # crop to the region (one voxel of margin) before padding: fracture regions are small, volumes large
    lo = np.array([int(np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != d)))[0]) for d in range(3)])
    hi = np.array([int(np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != d)))[-1]) for d in range(3)])
    lo, hi = np.maximum(lo - 1, 0), np.minimum(hi + 2, volume.shape)
    crop = volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
    outside = min(float(crop.min()), float(level)) - 1.0
    padded = np.pad(crop, 1, mode="constant", constant_values=outside)
    vertices, faces, _, _ = measure.marching_cubes(padded, level=float(level), step_size=int(step),
                                                   allow_degenerate=False)
    zyx = vertices.astype(np.float64) - 1.0 + lo
    origin, matrix = index_to_physical(grid)
    world = origin + zyx[:, ::-1] @ matrix.T
    # marching cubes winds faces clockwise seen from outside in (z, y, x); the map to world reverses the axis
    # order (a reflection), so the winding is outward exactly when index -> world preserves handedness
    faces = faces.astype(np.int64)
    if np.linalg.det(matrix) < 0:
        faces = faces[:, ::-1]
    return Mesh(world, faces)


def write_stl(mesh: Mesh, path: Path, description: str = "") -> Path:
    """Write a binary STL; the 80-byte header holds ``description`` and ``SPACE=LPS``."""
    text = f"nnunet_fracture {description} mm {COORDINATE_TAG}".encode("ascii", "replace")
    if len(text) > _STL_HEADER_BYTES:  # keep the coordinate tag, shorten the description
        text = text[: _STL_HEADER_BYTES - len(COORDINATE_TAG) - 1] + b" " + COORDINATE_TAG.encode()
    records = np.zeros(len(mesh.faces), dtype=_STL_RECORD)
    records["normal"] = mesh.face_normals()
    records["vertices"] = mesh.triangles()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(text.ljust(_STL_HEADER_BYTES, b"\0"))
        f.write(np.uint32(len(records)).astype("<u4").tobytes())
        f.write(records.tobytes())
    return path


def read_stl(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """Read a binary STL: ``(header text, normals (m, 3), triangles (m, 3, 3))``.

    Raises:
        ValueError: the file is not a complete binary STL.
    """
    data = Path(path).read_bytes()
    if len(data) < _STL_HEADER_BYTES + 4:
        raise ValueError(f"{path} is too short for a binary STL ({len(data)} bytes)")
    count = int(np.frombuffer(data, "<u4", 1, _STL_HEADER_BYTES)[0])
    if len(data) != _STL_HEADER_BYTES + 4 + count * _STL_RECORD.itemsize:
        raise ValueError(f"{path}: header announces {count} triangles but the file has {len(data)} bytes")
    records = np.frombuffer(data, _STL_RECORD, count, _STL_HEADER_BYTES + 4)
    header = data[:_STL_HEADER_BYTES].split(b"\0", 1)[0].decode("ascii", "replace")
    return header, records["normal"].astype(np.float64), records["vertices"].astype(np.float64)


def write_ply(mesh: Mesh, path: Path, description: str = "") -> Path:
    """Write an ASCII PLY with ``comment SPACE=LPS`` (and ``description``) in its header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["ply", "format ascii 1.0", f"comment nnunet_fracture {description} mm".rstrip(),
              f"comment {COORDINATE_TAG}", f"element vertex {len(mesh.vertices)}", "property float x",
              "property float y", "property float z", f"element face {len(mesh.faces)}",
              "property list uchar int vertex_indices", "end_header"]
    with open(path, "w") as f:
        f.write("\n".join(header) + "\n")
        np.savetxt(f, mesh.vertices, fmt="%.5f")
        if len(mesh.faces):
            np.savetxt(f, np.column_stack([np.full(len(mesh.faces), 3), mesh.faces]), fmt="%d")
    return path


def read_ply(path: Path) -> tuple[list[str], Mesh]:
    """Read an ASCII triangle PLY as written by :func:`write_ply`: ``(comments, mesh)``.

    Raises:
        ValueError: another PLY flavour (binary, extra properties, polygons other than triangles).
    """
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0] != "ply" or "end_header" not in lines:
        raise ValueError(f"{path} is not a PLY file")
    end = lines.index("end_header")
    header = lines[1:end]
    if "format ascii 1.0" not in header:
        raise ValueError(f"{path}: only ASCII PLY is read here")
    counts = {parts[1]: int(parts[2]) for parts in (h.split() for h in header) if parts[0] == "element"}
    comments = [h[len("comment "):] for h in header if h.startswith("comment ")]
    n_vertices, n_faces = counts.get("vertex", 0), counts.get("face", 0)
    body = lines[end + 1:]
    vertices = np.array([[float(v) for v in line.split()] for line in body[:n_vertices]], dtype=np.float64)
    faces = np.array([[int(v) for v in line.split()] for line in body[n_vertices:n_vertices + n_faces]],
                     dtype=np.int64)
    if n_faces and (faces.shape[1] != 4 or np.any(faces[:, 0] != 3)):
        raise ValueError(f"{path}: only triangle faces are read here")
    return comments, Mesh(vertices.reshape(-1, 3), faces[:, 1:] if n_faces else np.zeros((0, 3), np.int64))


def write_mesh(mesh: Mesh, path: Path, description: str = "") -> Path:
    """Write ``mesh`` as STL or PLY by the file's suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix == "stl":
        return write_stl(mesh, path, description)
    if suffix == "ply":
        return write_ply(mesh, path, description)
    raise ValueError(f"unknown mesh format {suffix!r} of {path}; expected one of {MESH_FORMATS}")


def mesh_step(shape: tuple[int, ...], max_edge: Optional[int]) -> int:
    """The smallest marching-cubes step that samples every axis of ``shape`` with at most ``max_edge`` points
    (1 when ``max_edge`` is None)."""
    if max_edge is None:
        return 1
    return max(1, int(np.ceil(max(shape) / max_edge)))
