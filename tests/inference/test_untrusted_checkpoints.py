"""vae-error and attention-maps check a model folder's checkpoint before nnU-Net unpickles it."""
import os

import pytest
import torch

from nnunet_fracture.cli import main


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def crafted_model(tmp_path):
    """A model folder whose checkpoint runs a command when unpickled (the probe of the reliability issue)."""
    model = tmp_path / "Dataset501_X" / "nnUNetTrainerNormalVAE__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text("{}")
    (model / "dataset.json").write_text("{}")
    torch.save({"network_weights": {}, "trainer_name": _Payload(tmp_path / "ran")},
               model / "fold_0" / "checkpoint_final.pth")
    return model


@pytest.mark.parametrize("argv", [["vae-error", "--vae", "{model}", "--images", "{tmp}/in", "--out", "{tmp}/out",
                                   "--scale", "1.0"],
                                  ["attention-maps", "{model}", "case0", "--out", "{tmp}/out"]])
def test_a_crafted_checkpoint_is_refused_in_one_line_and_never_run(crafted_model, tmp_path, capsys, argv):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "case0_0000.nii.gz").write_bytes(b"")
    argv = [a.format(model=crafted_model, tmp=tmp_path) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "checkpoint_final.pth: the checkpoint asks pickle for" in err
    assert "--trust-checkpoints" in err
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()
