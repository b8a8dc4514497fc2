import numpy as np
import pytest

from nnunet_fracture.inference.refinement import Refinement, refine_box, walker_beta

BOX = (slice(2, 10), slice(2, 10), slice(2, 10))


def band_case(noise: float = 5.0):
    """A 12^3 CT: healthy bone 200 HU with a 400 HU band (z 4..5, y and x 4..8) inside the box (2..9 on each
    axis); P high on one band voxel."""
    rng = np.random.default_rng(0)
    ct = 200 + noise * rng.standard_normal((12, 12, 12))
    ct[4:6, 4:9, 4:9] += 200
    p = np.full(ct.shape, 0.3)
    p[4, 6, 6] = 0.95
    return ct, p


def test_the_walker_follows_the_band_and_stays_in_the_box():
    ct, p = band_case()
    rule = p[BOX] >= 0.5
    out = refine_box(ct, p, BOX, rule, Refinement(size_bounds=(0.01, 0.5)))
    assert out.outcome == "refined"
    expected = np.zeros((8, 8, 8), dtype=bool)
    expected[2:4, 2:7, 2:7] = True  # the band, in box coordinates
    assert out.keep.shape == expected.shape
    assert np.array_equal(out.keep, expected)


def test_seeds_are_respected():
    ct, p = band_case()
    p[8, 8, 8] = 0.01  # a confident background voxel inside the box, in healthy bone
    out = refine_box(ct, p, BOX, p[BOX] >= 0.5, Refinement(size_bounds=(0.01, 0.5)))
    assert out.keep[4 - 2, 6 - 2, 6 - 2] and not out.keep[8 - 2, 8 - 2, 8 - 2]


def test_a_mask_that_breaks_the_size_bounds_is_reset_to_the_rule():
    ct, p = band_case()
    rule = p[BOX] >= 0.9
    out = refine_box(ct, p, BOX, rule, Refinement(size_bounds=(0.5, 0.9)))  # the band fills 10 % of the box
    assert out.outcome == "reset" and np.array_equal(out.keep, rule)


def test_without_a_confident_voxel_the_rule_mask_stays():
    ct, p = band_case()
    p[4, 6, 6] = 0.6
    rule = p[BOX] >= 0.5
    out = refine_box(ct, p, BOX, rule, Refinement())
    assert out.outcome == "no_seed" and out.keep is rule


def test_a_uniform_ct_keeps_the_rule_mask():
    _, p = band_case()
    rule = p[BOX] >= 0.5
    out = refine_box(np.full((12, 12, 12), 300.0), p, BOX, rule, Refinement())
    assert out.outcome == "no_contrast" and out.keep is rule


def test_method_none_changes_nothing():
    ct, p = band_case()
    rule = p[BOX] >= 0.5
    assert refine_box(ct, p, BOX, rule, Refinement("none")).keep is rule


def test_walker_beta_matches_a_gaussian_in_hu():
    hu = np.array([0.0, 100.0])  # std 50
    assert walker_beta(hu, 50.0) == pytest.approx(10 * 50 / (2 * 50 ** 2))


@pytest.mark.parametrize("kwargs", [{"method": "crf"}, {"foreground_seed": 0.1, "background_seed": 0.2},
                                    {"theta_hu": 0.0}, {"ring": 0}, {"size_bounds": (0.5, 0.2)}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Refinement(**kwargs)
