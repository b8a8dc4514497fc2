"""find_error_channel: which input channel holds the VAE error map E."""
import pytest

from nnunet_fracture.training.error_channel import find_error_channel


@pytest.mark.parametrize("meta, expected", [
    ({"channel_names": {"0": "CT"}}, None),
    ({"channel_names": {"0": "CT", "1": "noNorm"}}, 1),
    ({"channel_names": {"0": "CT", "1": "NONORM"}}, 1),
    ({"channel_names": {"0": "noNorm", "1": "CT"}}, 0),
    ({"channel_names": {"0": "CT", "1": "noNorm", "2": "noNorm"}, "nnunet_fracture": {"vae_error": {"channel": 2}}},
     2),
    ({"channel_names": {"0": "CT", "1": "zscore"}, "nnunet_fracture": {"vae_error": {"channel": 1}}}, 1),
])
def test_found(meta, expected):
    assert find_error_channel(meta) == expected


def test_ambiguous_or_inconsistent():
    with pytest.raises(ValueError, match=r"channels \[1, 2\] are all named 'noNorm'"):
        find_error_channel({"channel_names": {"0": "CT", "1": "noNorm", "2": "noNorm"}})
    with pytest.raises(ValueError, match="records the VAE error channel 3"):
        find_error_channel({"channel_names": {"0": "CT"}, "nnunet_fracture": {"vae_error": {"channel": 3}}})
