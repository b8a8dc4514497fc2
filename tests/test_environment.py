"""nnunet_fracture.environment.scoped_environ: set for a block, then restored or unset."""
import os

import pytest

from nnunet_fracture.environment import scoped_environ


def test_scoped_environ_restores_and_unsets(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NNF_KEPT", "old")
    monkeypatch.delenv("NNF_NEW", raising=False)
    with scoped_environ({"NNF_KEPT": "inside", "NNF_NEW": "3"}):
        assert os.environ["NNF_KEPT"] == "inside" and os.environ["NNF_NEW"] == "3"
    assert os.environ["NNF_KEPT"] == "old" and "NNF_NEW" not in os.environ
    with pytest.raises(RuntimeError), scoped_environ({"NNF_KEPT": "again"}):
        raise RuntimeError("the block fails")
    assert os.environ["NNF_KEPT"] == "old"
