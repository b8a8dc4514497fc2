"""io.checkpoints: a crafted checkpoint is refused before pickle can run it; real nnU-Net content passes."""
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from nnunet_fracture.io.checkpoints import UntrustedCheckpointError, verify_checkpoint, verify_checkpoints


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a crafted checkpoint does: run a command while being unpickled
        return os.system, (f"touch {self.marker}",)


def test_nnunet_checkpoint_content_passes(tmp_path):
    # the types an nnU-Net checkpoint holds (nnUNetTrainer.save_checkpoint), with numpy values in its log
    checkpoint = {"network_weights": OrderedDict(w=torch.ones(2, 3)), "optimizer_state": {"state": {}},
                  "grad_scaler_state": None, "current_epoch": 3, "_best_ema": 0.5,
                  "logging": {"ema_fg_dice": [np.float64(0.25)], "dice_per_class": [[np.float32(0.1)]]},
                  "init_args": {"plans": {"a": [1, 2]}, "configuration": "3d_fullres", "fold": 0,
                                "device": torch.device("cpu")},
                  "extra": {"difficulty": np.arange(4, dtype=np.float32), "dtype": np.dtype("int16")},
                  "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)}
    torch.save(checkpoint, tmp_path / "checkpoint_final.pth")
    verify_checkpoint(tmp_path / "checkpoint_final.pth")


def test_a_crafted_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"network_weights": {}, "trainer_name": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(UntrustedCheckpointError, match=r"evil.pth: the checkpoint asks pickle for .*system.*"
                                                       r"--trust-checkpoints"):
        verify_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(UntrustedCheckpointError):
        verify_checkpoints([tmp_path / "evil.pth"], trust=False)
    verify_checkpoints([tmp_path / "evil.pth"], trust=True)  # the user's call: checked no further
    assert not marker.exists()  # (verify_checkpoints itself never unpickles)
