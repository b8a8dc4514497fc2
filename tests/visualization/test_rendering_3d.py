"""The 3D picture shows red fracture inside grey bone, from the vertebra map or the CT."""
import numpy as np
import pytest

from nnunet_fracture.visualization.case_volumes import load_case, read_boxes_json
from nnunet_fracture.visualization.rendering_3d import bone_volume, box_edges, case_rendering, render_mesh
from visualization_helpers import BOX_HI_ZYX, BOX_LO_ZYX, rgb, write_case


@pytest.fixture
def volumes(tmp_path):
    files = write_case(tmp_path)
    return load_case("c1", files["images"], files["predictions"], read_boxes_json(files["boxes_file"]),
                     files["boxes_file"], vertebrae=files["vertebrae"])


def _red(image):
    return (image[..., 0] > 0.4) & (image[..., 0] > 2.5 * image[..., 1]) & (image[..., 0] > 2.5 * image[..., 2])


def _grey(image):
    spread = image.max(axis=-1) - image.min(axis=-1)
    return (spread < 0.03) & (image[..., 0] > 0.45) & (image[..., 0] < 0.9)


def test_fracture_red_in_grey_bone(volumes):
    fig = case_rendering(volumes, threshold=0.5)
    image = rgb(fig)
    assert "vertebra label map" in fig.get_suptitle()
    for ax in fig.axes:
        box = ax.get_window_extent()
        height = image.shape[0]
        panel = image[int(height - box.y1):int(height - box.y0), int(box.x0):int(box.x1)]
        assert _red(panel).sum() > 100
        assert _grey(panel).sum() > 100


def test_no_fracture_said_and_not_drawn(volumes):
    volumes.probability[:] = 0.1
    fig = case_rendering(volumes, threshold=0.5)
    assert "no voxel with p >= 0.5" in fig.get_suptitle()
    assert _red(rgb(fig)).sum() == 0


def test_bone_from_ct_without_vertebra_map(volumes):
    volumes.vertebrae = None
    array, level, text = bone_volume(volumes, bone_threshold=300)
    assert array is volumes.ct and level == 300 and "CT >= 300 HU" in text
    mesh = render_mesh(array, level, volumes.grid)
    assert not mesh.is_empty


def test_render_mesh_stays_under_the_face_budget(volumes):
    bone, level, _ = bone_volume(volumes)
    full = render_mesh(bone, level, volumes.grid, max_faces=10**9)
    small = render_mesh(bone, level, volumes.grid, max_faces=len(full.faces) // 3)
    assert len(small.faces) <= len(full.faces) // 3


def test_box_frame_in_world_coordinates(volumes):
    (box,) = volumes.boxes
    edges = box_edges(box, volumes.grid)
    assert edges.shape == (12, 2, 3)
    corners = edges.reshape(-1, 3)
    low = volumes.grid.TransformContinuousIndexToPhysicalPoint([v - 0.5 for v in BOX_LO_ZYX[::-1]])
    high = volumes.grid.TransformContinuousIndexToPhysicalPoint([v + 0.5 for v in BOX_HI_ZYX[::-1]])
    np.testing.assert_allclose(corners.min(axis=0), low)
    np.testing.assert_allclose(corners.max(axis=0), high)
