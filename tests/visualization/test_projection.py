"""Maximum-intensity projections: the arrays drawn are numpy's max (and mean) along each axis, and the hottest
pixel of each panel is where the probability peak projects."""
import numpy as np
import pytest

from nnunet_fracture.visualization.case_volumes import load_case, read_boxes_json
from nnunet_fracture.visualization.overlay_layers import PLANES
from nnunet_fracture.visualization.projection import mip_figure, project
from visualization_helpers import PEAK, cyan, pixels_in, reddest, rgb, write_case


@pytest.fixture
def volumes(tmp_path):
    files = write_case(tmp_path)
    volumes = load_case("c1", files["images"], files["predictions"], read_boxes_json(files["boxes_file"]),
                        files["boxes_file"])
    # a second, weaker blob elsewhere: the projection must keep the maximum along each ray
    volumes.probability[1, 2, 3] = 0.4
    return volumes


def test_mip_arrays_are_numpy_max(volumes):
    fig = mip_figure(volumes)
    for ax, plane, axis in zip(fig.axes, PLANES, (0, 1, 2)):
        ct_image, heat_image = ax.get_images()
        np.testing.assert_array_equal(np.asarray(ct_image.get_array()), volumes.ct.max(axis=axis))
        np.testing.assert_array_equal(np.ma.getdata(heat_image.get_array()), volumes.probability.max(axis=axis))


def test_mean_projection_of_the_ct(volumes):
    fig = mip_figure(volumes, ct_projection="mean")
    for ax, axis in zip(fig.axes, (0, 1, 2)):
        np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), volumes.ct.mean(axis=axis))


def test_project_rejects_unknown_mode(volumes):
    with pytest.raises(ValueError, match="unknown projection"):
        project(volumes.ct, PLANES[0], "median")
    with pytest.raises(ValueError, match="unknown CT projection"):
        mip_figure(volumes, ct_projection="median")


def test_hot_pixels_where_the_peak_projects(volumes):
    fig = mip_figure(volumes)
    image = rgb(fig)
    assert image.std() > 0.05
    for ax, plane in zip(fig.axes, PLANES):
        col, row = reddest(ax, image).mean(axis=0)
        assert (col, row) == (pytest.approx(PEAK[plane.cols], abs=0.5), pytest.approx(PEAK[plane.rows], abs=0.5))
        assert len(pixels_in(ax, image, cyan(image))) > 50  # the box is outlined in every projection
