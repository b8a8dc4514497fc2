"""Find the VAE reconstruction-error channel ``E`` of a dataset (written by ``nnunet-fracture vae-error``).

The channel is named ``noNorm`` in ``dataset.json`` ``channel_names`` (so nnU-Net leaves its [0, 1] values as they
are) and recorded in the provenance block ``nnunet_fracture.vae_error.channel``. Preprocessed data keep the
channel order of ``dataset.json``, so the index is also the channel of a training batch's ``data``.
"""
from __future__ import annotations

from typing import Optional

ERROR_CHANNEL_NAME = "noNorm"


def find_error_channel(dataset_json: dict) -> Optional[int]:
    """The index of the error channel: the provenance entry where present, else the one channel named ``noNorm``
    (any letter case); ``None`` when there is none.

    Raises:
        ValueError: the provenance names a channel that ``channel_names`` lacks, or several channels are named
            ``noNorm`` and no provenance says which one is ``E``.
    """
    names = {int(k): str(v) for k, v in (dataset_json.get("channel_names") or {}).items()}
    recorded = ((dataset_json.get("nnunet_fracture") or {}).get("vae_error") or {}).get("channel")
    if recorded is not None:
        if int(recorded) not in names:
            raise ValueError(f"dataset.json records the VAE error channel {recorded} (nnunet_fracture.vae_error) but "
                             f"channel_names has only {sorted(names)}. Fix: write the dataset again with "
                             f"`nnunet-fracture vae-error`.")
        return int(recorded)
    matches = sorted(k for k, v in names.items() if v.casefold() == ERROR_CHANNEL_NAME.casefold())
    if len(matches) > 1:
        raise ValueError(f"channels {matches} are all named {ERROR_CHANNEL_NAME!r} and dataset.json does not say which "
                         f"one is the VAE error map. Fix: add "
                         f"\"nnunet_fracture\": {{\"vae_error\": {{\"channel\": N}}}}.")
    return matches[0] if matches else None
