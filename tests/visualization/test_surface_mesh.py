"""Surfaces in world mm: re-read STL and PLY files, vertices inside the region's world bounding box, outward
normals, enclosed volume, the SPACE=LPS tag that 3D Slicer reads."""
import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.visualization.surface_mesh import (Mesh, read_ply, read_stl, surface_mesh, write_mesh,
                                                        write_ply, write_stl)
from visualization_helpers import probability_blob

DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flipped x": (-1, 0, 0, 0, 1, 0, 0, 0, 1),
    "permuted": (0, 0, 1, 1, 0, 0, 0, 1, 0),
}


def _grid(shape, direction):
    grid = sitk.Image(shape[::-1], sitk.sitkUInt8)
    grid.SetSpacing((0.8, 1.0, 2.5))
    grid.SetOrigin((-30.0, 12.5, 100.0))
    grid.SetDirection(direction)
    return grid


def _world_box(grid, mask):
    """World bounding box (LPS mm) of the voxel centres of ``mask`` and the grid's per-axis world step."""
    points = np.array([grid.TransformIndexToPhysicalPoint([int(i) for i in v[::-1]]) for v in np.argwhere(mask)])
    matrix = np.asarray(grid.GetDirection()).reshape(3, 3) * np.asarray(grid.GetSpacing())
    return points.min(axis=0), points.max(axis=0), np.abs(matrix).max(axis=1)


def _enclosed_volume(mesh: Mesh) -> float:
    t = mesh.triangles()
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
@pytest.mark.parametrize("fmt", ["stl", "ply"])
def test_mesh_file_in_world_coordinates(tmp_path, direction, fmt):
    shape = (12, 20, 24)
    p = probability_blob(shape, peak=(6, 9, 13), sigma=(1.5, 3.0, 3.0), height=0.95)
    grid = _grid(shape, direction)
    threshold = 0.5
    mesh = surface_mesh(p, threshold, grid)
    assert not mesh.is_empty
    path = write_mesh(mesh, tmp_path / f"fracture.{fmt}", "c1 fracture p>=0.5")
    if fmt == "stl":
        header, normals, triangles = read_stl(path)
        assert "SPACE=LPS" in header and not header.startswith("solid")
        vertices = triangles.reshape(-1, 3)
    else:
        comments, read = read_ply(path)
        assert "SPACE=LPS" in comments
        vertices, triangles = read.vertices, read.triangles()
        normals = read.face_normals()
    assert len(triangles) == len(mesh.faces)
    # the iso-surface at the threshold runs between a voxel >= threshold and its neighbour below it
    low, high, step = _world_box(grid, p >= threshold)
    assert np.all(vertices >= low - step - 1e-3) and np.all(vertices <= high + step + 1e-3)
    assert np.all(vertices.min(axis=0) < low + 1e-3) and np.all(vertices.max(axis=0) > high - 1e-3)
    # outward normals: pointing away from the blob's centre
    centre = np.asarray(grid.TransformContinuousIndexToPhysicalPoint((13.0, 9.0, 6.0)))
    outward = np.einsum("ij,ij->i", normals, triangles.mean(axis=1) - centre)
    assert np.mean(outward > 0) > 0.99


def test_binary_mask_surface_encloses_the_voxel_volume():
    shape = (14, 16, 18)
    z, y, x = np.mgrid[:14, :16, :18]
    mask = ((z - 7) / 4.0) ** 2 + ((y - 8) / 5.0) ** 2 + ((x - 9) / 6.0) ** 2 <= 1.0
    mask[0:3, 0:16, 0:3] = True  # a block touching the border: closed by the padding
    grid = _grid(shape, DIRECTIONS["identity"])
    mesh = surface_mesh(mask.astype(np.float32), 0.5, grid)
    voxel_mm3 = 0.8 * 1.0 * 2.5
    assert _enclosed_volume(mesh) == pytest.approx(mask.sum() * voxel_mm3, rel=0.1)
    low, high, step = _world_box(grid, mask)
    assert np.all(mesh.vertices >= low - step / 2 - 1e-6) and np.all(mesh.vertices <= high + step / 2 + 1e-6)


def test_coarser_step_keeps_the_place(tmp_path):
    shape = (12, 20, 24)
    p = probability_blob(shape, peak=(6, 9, 13), sigma=(2.0, 4.0, 4.0), height=1.0)
    grid = _grid(shape, DIRECTIONS["identity"])
    fine, coarse = surface_mesh(p, 0.5, grid), surface_mesh(p, 0.5, grid, step=2)
    assert 0 < len(coarse.faces) < len(fine.faces)
    np.testing.assert_allclose(coarse.vertices.mean(axis=0), fine.vertices.mean(axis=0), atol=1.0)


def test_nothing_above_the_level_gives_an_empty_mesh():
    grid = _grid((4, 5, 6), DIRECTIONS["identity"])
    assert surface_mesh(np.zeros((4, 5, 6), np.float32), 0.5, grid).is_empty


def test_shape_and_step_checked():
    grid = _grid((4, 5, 6), DIRECTIONS["identity"])
    with pytest.raises(ValueError, match="does not match"):
        surface_mesh(np.zeros((6, 5, 4)), 0.5, grid)
    with pytest.raises(ValueError, match="step"):
        surface_mesh(np.ones((4, 5, 6)), 0.5, grid, step=0)


def test_long_description_keeps_the_coordinate_tag(tmp_path):
    mesh = Mesh(np.eye(3), np.array([[0, 1, 2]]))
    header, normals, triangles = read_stl(write_stl(mesh, tmp_path / "m.stl", "x" * 200))
    assert header.endswith("SPACE=LPS") and len(header) <= 80
    np.testing.assert_allclose(triangles[0], np.eye(3))
    np.testing.assert_allclose(normals[0], np.ones(3) / np.sqrt(3), atol=1e-6)


def test_truncated_stl_and_other_ply_rejected(tmp_path):
    mesh = Mesh(np.eye(3), np.array([[0, 1, 2]]))
    path = write_stl(mesh, tmp_path / "m.stl")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="announces 1 triangles"):
        read_stl(path)
    ply = write_ply(mesh, tmp_path / "m.ply")
    ply.write_text(ply.read_text(encoding="utf-8").replace("format ascii 1.0", "format binary_little_endian 1.0"))
    with pytest.raises(ValueError, match="only ASCII"):
        read_ply(ply)
    with pytest.raises(ValueError, match="unknown mesh format"):
        write_mesh(mesh, tmp_path / "m.obj")
