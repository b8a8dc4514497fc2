"""benchmarks/robustness.py: every probe of the reliability review gets its expected outcome (a one-line error
that names the file or case, or the documented acceptance)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from robustness import PROBES, classify, run_probe  # noqa: E402


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_probe_gets_its_expected_outcome(probe, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    row = run_probe(probe)
    assert row["ok"], row


def test_classification_by_hand():
    assert classify(1, "nnunet-fracture convert: error: case 'a': bad\n") == "clear error"
    assert classify(0, "nnunet-fracture: warning: clipped\n") == "accepted"
    assert classify(1, "Traceback (most recent call last):\n  ...\nValueError: x: error: y\n") == "failure"
    assert classify(2, "nnunet-fracture convert: error: x\n") == "failure"
