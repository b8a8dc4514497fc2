import numpy as np
import pytest

from nnunet_fracture.io.probability_files import load_fracture_probability

SHAPE = (3, 4, 5)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, ">f4"])
@pytest.mark.parametrize("save", [np.savez_compressed, np.savez])
def test_streamed_channel_equals_the_full_load(tmp_path, channels, dtype, save):
    probabilities = np.random.default_rng(0).random((channels,) + SHAPE).astype(dtype)
    save(tmp_path / "c.npz", probabilities=probabilities, other=np.zeros(2))
    fracture = load_fracture_probability(tmp_path / "c.npz", "c", SHAPE)
    assert fracture.dtype == np.float32 and fracture.flags.writeable
    np.testing.assert_array_equal(fracture, probabilities[channels - 1].astype(np.float32))


def test_fortran_order_falls_back_to_np_load(tmp_path):
    probabilities = np.asfortranarray(np.random.default_rng(1).random((2,) + SHAPE).astype(np.float32))
    np.savez_compressed(tmp_path / "f.npz", probabilities=probabilities)
    np.testing.assert_array_equal(load_fracture_probability(tmp_path / "f.npz", "f", SHAPE), probabilities[1])


def test_overshoot_is_clipped_and_beyond_is_an_error(tmp_path):
    probabilities = np.zeros((1,) + SHAPE, np.float32)
    probabilities[0, 0, 0, 0] = 1 + 1e-7
    np.savez_compressed(tmp_path / "a.npz", probabilities=probabilities)
    assert load_fracture_probability(tmp_path / "a.npz", "a", SHAPE).max() == 1.0
    probabilities[0, 0, 0, 0] = 1.01
    np.savez_compressed(tmp_path / "a.npz", probabilities=probabilities)
    with pytest.raises(ValueError, match=r"case a: .*outside \[0, 1\]"):
        load_fracture_probability(tmp_path / "a.npz", "a", SHAPE)


@pytest.mark.parametrize("save", [np.savez_compressed, np.savez])
def test_a_model_with_several_fracture_classes_gives_one_minus_background(tmp_path, save):
    """Background, dense and lucent softmax channels: the fracture probability is 1 - P(background)."""
    background = np.array([1.0, 0.75, 0.5, 0.25, 0.0] * 12, np.float32).reshape(SHAPE)
    dense = (1 - background) * 0.75
    save(tmp_path / "k.npz", probabilities=np.stack([background, dense, 1 - background - dense]))
    np.testing.assert_array_equal(load_fracture_probability(tmp_path / "k.npz", "k", SHAPE), 1 - background)


@pytest.mark.parametrize("array_shape, message", [((0,) + SHAPE, "no channel"), ((2, 3, 4, 6), "have shape"),
                                                  (SHAPE, "have shape")])
def test_bad_arrays_name_case_and_problem(tmp_path, array_shape, message):
    np.savez_compressed(tmp_path / "b.npz", probabilities=np.zeros(array_shape, np.float32))
    with pytest.raises(ValueError, match=f"case b: .*{message}"):
        load_fracture_probability(tmp_path / "b.npz", "b", SHAPE)


def test_missing_array_and_non_finite_values(tmp_path):
    np.savez_compressed(tmp_path / "m.npz", softmax=np.zeros((2,) + SHAPE, np.float32))
    with pytest.raises(ValueError, match="no 'probabilities' array"):
        load_fracture_probability(tmp_path / "m.npz", "m", SHAPE)
    bad = np.zeros((2,) + SHAPE, np.float32)
    bad[1, 0, 0, 0] = np.nan
    np.savez_compressed(tmp_path / "n.npz", probabilities=bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_fracture_probability(tmp_path / "n.npz", "n", SHAPE)


@pytest.mark.parametrize("keep", [0, 30, 200, None])
def test_a_truncated_archive_is_a_one_line_error_naming_case_and_fix(tmp_path, keep):
    full = tmp_path / "full.npz"
    np.savez_compressed(full, probabilities=np.random.default_rng(0).random((2, 8, 8, 8)).astype(np.float32))
    data = full.read_bytes()
    broken = tmp_path / "case7.npz"
    broken.write_bytes(data[: len(data) // 2] if keep is None else data[:keep])
    with pytest.raises(ValueError, match=r"case case7: .*case7.npz is not a readable npz archive .*Fix: predict "
                                         r"this case again"):
        load_fracture_probability(broken, "case7", (8, 8, 8))
