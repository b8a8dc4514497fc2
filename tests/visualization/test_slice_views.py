"""Case loading (grids, boxes, errors) and the three-plane views: hot pixels, box outlines, proportions."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_fracture.visualization.case_volumes import load_case, prediction_cases, read_boxes_json
from nnunet_fracture.visualization.overlay_layers import PLANES
from nnunet_fracture.visualization.slice_views import case_views, views_figure
from visualization_helpers import (BOX_HI_ZYX, BOX_LO_ZYX, PEAK, SHAPE, SPACING, cyan, pixels_in, probability_blob,
                                   reddest, rgb, write_case, write_image)


def _load(files, case="c1", **overrides):
    kwargs = dict(boxes=read_boxes_json(files["boxes_file"]), boxes_file=files["boxes_file"],
                  vertebrae=files["vertebrae"], ground_truth=files["ground_truth"])
    kwargs.update(overrides)
    return load_case(case, files["images"], files["predictions"], **kwargs)


@pytest.fixture
def files(tmp_path):
    return write_case(tmp_path)


def test_load_case_arrays_and_boxes(files):
    volumes = _load(files)
    assert volumes.ct.shape == SHAPE and volumes.probability.shape == SHAPE
    np.testing.assert_allclose(volumes.probability, probability_blob())
    assert volumes.spacing_zyx == pytest.approx(SPACING[::-1])
    assert volumes.max_voxel() == PEAK
    (box,) = volumes.boxes
    assert (box.number, box.lo_zyx, box.hi_zyx) == (1, BOX_LO_ZYX, BOX_HI_ZYX)
    assert box.centre_zyx == (5, 8, 14)
    assert volumes.vertebrae.max() == 20 and volumes.ground_truth.any()
    assert "c1.npz" in volumes.probability_source


def test_two_channel_softmax_probabilities(tmp_path):
    files = write_case(tmp_path, channels=2)
    np.testing.assert_allclose(_load(files).probability, probability_blob(), atol=1e-6)


def test_segmentation_stands_in_without_npz(files):
    (files["predictions"] / "c1.npz").unlink()
    volumes = _load(files)
    assert set(np.unique(volumes.probability)) == {0.0, 1.0}
    assert "segmentation" in volumes.probability_source


def test_flipped_direction_is_shown_in_display_orientation(tmp_path):
    # x axis pointing to the patient's right: the display grid flips it back; boxes follow their voxels
    files = write_case(tmp_path, direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    volumes = _load(files)
    assert volumes.grid.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    np.testing.assert_allclose(volumes.probability, probability_blob()[:, :, ::-1])
    (box,) = volumes.boxes
    nx = SHAPE[2]
    assert box.lo_zyx == (BOX_LO_ZYX[0], BOX_LO_ZYX[1], nx - 1 - BOX_HI_ZYX[2])
    assert box.hi_zyx == (BOX_HI_ZYX[0], BOX_HI_ZYX[1], nx - 1 - BOX_LO_ZYX[2])
    assert box.lo_ijk == tuple(BOX_LO_ZYX[::-1])  # boxes.json indices are kept as given
    # the same voxels: the box holds the probability peak in both grids
    inside = volumes.probability[tuple(slice(lo, hi + 1) for lo, hi in zip(box.lo_zyx, box.hi_zyx))]
    assert inside.max() == pytest.approx(0.9)
    # world position of the peak is unchanged by the reorientation
    original = sitk.ReadImage(str(files["images"] / "c1_0000.nii.gz"))
    peak = volumes.max_voxel()
    assert volumes.grid.TransformIndexToPhysicalPoint(peak[::-1]) == pytest.approx(
        original.TransformIndexToPhysicalPoint(PEAK[::-1]))


@pytest.mark.parametrize("plane_index", [0, 1, 2])
def test_hot_pixels_at_the_probability_maximum(files, plane_index):
    volumes = _load(files)
    fig = views_figure(volumes, volumes.max_voxel(), "maximum probability")
    image = rgb(fig)
    assert image.std() > 0.05  # not blank
    plane = PLANES[plane_index]
    ax = fig.axes[plane_index]
    hot = reddest(ax, image)
    assert len(hot) > 20
    col, row = hot.mean(axis=0)
    assert col == pytest.approx(PEAK[plane.cols], abs=0.5) and row == pytest.approx(PEAK[plane.rows], abs=0.5)
    assert np.all(np.abs(hot[:, 0] - PEAK[plane.cols]) <= 0.6) and np.all(np.abs(hot[:, 1] - PEAK[plane.rows]) <= 0.6)


@pytest.mark.parametrize("plane_index", [0, 1, 2])
def test_box_outline_on_the_box_edges(files, plane_index):
    volumes = _load(files)
    name, fig = next(case_views(volumes))
    assert name == "box1"
    image = rgb(fig)
    plane = PLANES[plane_index]
    points = pixels_in(fig.axes[plane_index], image, cyan(image))
    assert len(points) > 50
    (c_min, r_min), (c_max, r_max) = points.min(axis=0), points.max(axis=0)
    assert c_min == pytest.approx(BOX_LO_ZYX[plane.cols] - 0.5, abs=0.3)
    assert c_max == pytest.approx(BOX_HI_ZYX[plane.cols] + 0.5, abs=0.3)
    assert r_min == pytest.approx(BOX_LO_ZYX[plane.rows] - 0.5, abs=0.3)
    assert r_max == pytest.approx(BOX_HI_ZYX[plane.rows] + 0.5, abs=0.3)


def test_views_keep_true_proportions(files):
    volumes = _load(files)
    fig = views_figure(volumes, PEAK, "proportions")
    fig.canvas.draw()
    sz, sy, sx = SPACING[::-1]
    nz, ny, nx = SHAPE
    expected = {"axial": (nx * sx) / (ny * sy), "coronal": (nx * sx) / (nz * sz), "sagittal": (ny * sy) / (nz * sz)}
    for ax, plane in zip(fig.axes, PLANES):
        extent = ax.get_images()[0].get_window_extent()
        assert extent.width / extent.height == pytest.approx(expected[plane.name], rel=0.03)


def test_one_view_per_box_then_the_maximum(files):
    boxes = json.loads(files["boxes_file"].read_text(encoding="utf-8"))
    boxes["c1"].append({"box_id": 2, "lo": [0, 0, 0], "hi": [3, 3, 1]})
    files["boxes_file"].write_text(json.dumps(boxes))
    assert [name for name, _ in case_views(_load(files))] == ["box1", "box2", "max"]


def test_prediction_cases(files):
    write_image(np.zeros(SHAPE, np.uint8), files["predictions"] / "c2.nii.gz")
    (files["predictions"] / "plans.json").write_text("{}")
    assert prediction_cases(files["predictions"]) == ["c1", "c2"]


def test_missing_ct_names_case_and_fix(files):
    (files["images"] / "c1_0000.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"case c1: no CT .*c1_0000\.nii\.gz.*Fix"):
        _load(files)


def test_missing_prediction_names_case(files):
    with pytest.raises(FileNotFoundError, match=r"case c9: no CT"):
        _load(files, case="c9")
    write_image(np.zeros(SHAPE, np.int16), files["images"] / "c9_0000.nii.gz")
    with pytest.raises(FileNotFoundError, match=r"case c9: no prediction .*c9\.npz"):
        _load(files, case="c9")


def test_geometry_mismatch_names_case_file_and_property(files):
    write_image(np.zeros(SHAPE, np.uint8), files["vertebrae"] / "c1.nii.gz", spacing=(0.8, 1.0, 3.0))
    with pytest.raises(ValueError, match=r"case c1: vertebra map .*c1\.nii\.gz has spacing .*Fix"):
        _load(files)


def test_prediction_on_another_grid(files):
    write_image(np.zeros(SHAPE, np.uint8), files["predictions"] / "c1.nii.gz", origin=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"case c1: prediction .* has origin"):
        _load(files)


def test_probabilities_out_of_range(files):
    bad = probability_blob()[None].copy()
    bad[0, 0, 0, 0] = 1.5
    np.savez_compressed(files["predictions"] / "c1.npz", probabilities=bad)
    with pytest.raises(ValueError, match=r"case c1: .*outside \[0, 1\]"):
        _load(files)


def test_probabilities_of_the_wrong_shape(files):
    np.savez_compressed(files["predictions"] / "c1.npz", probabilities=np.zeros((1, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"case c1: .*shape"):
        _load(files)


def test_box_outside_the_image(files):
    files["boxes_file"].write_text(json.dumps({"c1": [{"box_id": 1, "lo": [0, 0, 0], "hi": [30, 2, 2]}]}))
    with pytest.raises(ValueError, match=r"case c1: box 1 in .*boxes\.json.*not inside the image"):
        _load(files)


@pytest.mark.parametrize("text, message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "must map case ids"),
    ('{"c1": [{"lo": [0, 0], "hi": [1, 1, 1]}]}', r"case c1: box 1 .* needs integer lists"),
])
def test_bad_boxes_json(tmp_path, text, message):
    path = tmp_path / "boxes.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_boxes_json(path)


def test_view_point_outside(files):
    with pytest.raises(ValueError, match="outside the volume"):
        views_figure(_load(files), (0, 0, 99), "bad")
