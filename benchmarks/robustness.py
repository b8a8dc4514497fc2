"""Replay the bad-input and fault probes of the reliability review and print what each one gets.

    python benchmarks/robustness.py [--json benchmarks/results/robustness.json]

Each probe builds a small faulty input in a temporary folder (a CT with NaN voxels, a box far outside the scan, a
crafted checkpoint, a write cut by a file-size limit, ...), runs the verb a user would run - ``nnunet-fracture
...`` in this process, or the library call where no verb exists - and classifies the outcome:

- ``clear error``: exit status 1 and one line on stderr, ``nnunet-fracture VERB: error: ...``, that names the
  offending file or case (no traceback);
- ``accepted``: exit status 0, the documented behaviour (e.g. a 5 mm overhang clipped with a warning, or an
  interrupted ``--overwrite`` recovered);
- anything else (a traceback, a silent success where an error was expected) is a failure.

The table lists probe, expected and observed outcome, and the message. ``tests/benchmarks/test_robustness.py`` runs
every probe and requires the expected outcome, so the list is part of the suite.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

HEADER = "case_id,x_min,y_min,z_min,x_max,y_max,z_max,space,label,grade\n"
ROW = "a,11,-20,7.5,13,-18,12.5,world,L1,2\n"  # a valid world box of case a


@dataclass(frozen=True)
class Probe:
    name: str
    expected: str  # "clear error" | "accepted"
    run: Callable[[Path], tuple[int, str]]  # (exit status, stderr) in a fresh temporary folder
    needle: str = ""  # text the message must contain (file, case or line it names)


def _ct(array: np.ndarray | None = None, pixel=sitk.sitkInt16, value=-1000) -> sitk.Image:
    image = sitk.GetImageFromArray(array) if array is not None else sitk.Image([10, 12, 8], pixel) + value
    if image.GetDimension() == 3:
        image.SetSpacing((0.8, 0.8, 2.5))
        image.SetOrigin((10.0, -20.0, 5.0))
    return image


def _generic(root: Path, rows: str = ROW, image: sitk.Image | None = None, header: str = HEADER) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image if image is not None else _ct(), str(root / "images" / "a.nii.gz"))
    (root / "boxes.csv").write_text(header + rows)
    return root


def _cli(argv: list[str]) -> tuple[int, str]:
    from nnunet_fracture.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main([str(a) for a in argv])
        except BaseException as exc:  # an escaped exception is a failure of the probe, shown as a traceback
            import traceback

            return 2, err.getvalue() + "Traceback:\n" + "".join(traceback.format_exception(exc))
    return rc, err.getvalue()


def _convert(tmp: Path, **kwargs) -> tuple[int, str]:
    os.environ["nnUNet_raw"] = str(tmp / "raw")
    return _cli(["convert", "generic", _generic(tmp / "in", **kwargs), "--dataset-id", 42, "--name", "Probe"])


def _float_ct(value: float, dtype=np.float32) -> sitk.Image:
    array = np.full((8, 12, 10), -1000, dtype=dtype)
    array[4, 6, 5] = value
    return _ct(array)


def _settings(text: str) -> tuple[int, str]:
    from nnunet_fracture.training.settings import resolve_settings
    from nnunet_fracture.trainers import nnUNetTrainerWeakBBox

    try:
        resolve_settings(nnUNetTrainerWeakBBox, text)
    except ValueError as exc:
        return 1, f"nnunet-fracture settings: error: {exc}"
    return 0, ""


def _interrupted_overwrite(tmp: Path) -> tuple[int, str]:
    rc, err = _convert(tmp)
    old = tmp / "raw" / "Dataset042_Probe"
    old.rename(tmp / "raw" / ".Dataset042_Probe.old-0123abcd")  # killed between install's two renames
    rc, err = _cli(["convert", "generic", tmp / "in", "--dataset-id", 42, "--name", "Probe", "--overwrite"])
    ok = rc == 0 and old.is_dir() and not list((tmp / "raw").glob(".*"))
    return (0 if ok else 1), err


def _file_size_limit(tmp: Path) -> tuple[int, str]:
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run([sys.executable, "-c", "import sys; from nnunet_fracture.cli import main; sys.exit(main())",
                           "phantom", str(tmp / "out"), "--cases", "1", "--spacing", "3", "3", "3"],
                          capture_output=True, text=True, preexec_fn=limit)
    return done.returncode, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


def _evaluate(tmp: Path, extra_prediction: bool = False, truncate_npz: bool = False, existing_out: bool = False):
    mask = _ct(np.zeros((8, 12, 10), np.uint8))
    for folder in ("gt", "pred"):
        (tmp / folder).mkdir()
        sitk.WriteImage(mask, str(tmp / folder / "a.nii.gz"))
    if extra_prediction:
        sitk.WriteImage(mask, str(tmp / "pred" / "b.nii.gz"))
    if truncate_npz:
        np.savez_compressed(tmp / "pred" / "a.npz", probabilities=np.zeros((1, 8, 12, 10), np.float32))
        data = (tmp / "pred" / "a.npz").read_bytes()
        (tmp / "pred" / "a.npz").write_bytes(data[: len(data) // 2])
    if existing_out:
        (tmp / "out").mkdir()
        (tmp / "out" / "vertebrae.csv").write_text("stale")
    return _cli(["evaluate", tmp / "pred", tmp / "gt", "--out", tmp / "out"])


def _crafted_checkpoint(tmp: Path) -> tuple[int, str]:
    import torch

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp / 'ran'}",)

    model = tmp / "Dataset501_X" / "nnUNetTrainerAttentionUNet__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text("{}")
    (model / "dataset.json").write_text("{}")
    torch.save({"network_weights": {}, "trainer_name": Payload()}, model / "fold_0" / "checkpoint_final.pth")
    rc, err = _cli(["attention-maps", model, "case0", "--out", tmp / "out"])
    return (rc if not (tmp / "ran").exists() else 3), err


def _rsna_dotdot(tmp: Path) -> tuple[int, str]:
    (tmp / "rsna" / "train_images").mkdir(parents=True)
    (tmp / "rsna" / "train_bounding_boxes.csv").write_text("StudyInstanceUID,x,y,width,height,slice_number\n"
                                                           "..,1,1,2,2,1\n")
    os.environ["nnUNet_raw"] = str(tmp / "raw")
    return _cli(["convert", "rsna", tmp / "rsna", "--dataset-id", 43, "--name", "Probe"])


def _reorient_link(tmp: Path) -> tuple[int, str]:
    _convert(tmp)
    (tmp / "secret.txt").write_text("outside")
    (tmp / "raw" / "Dataset042_Probe" / "notes.txt").symlink_to(tmp / "secret.txt")
    return _cli(["reorient", 42, "--plane", "coronal", "--dataset-id", 44])


PROBES = [
    Probe("CT with a NaN voxel (float NIfTI)", "clear error", lambda t: _convert(t, image=_float_ct(np.nan)),
          "NaN"),
    Probe("CT value 1e308 (beyond float32)", "clear error",
          lambda t: _convert(t, image=_float_ct(1e308, np.float64)), "a.nii.gz"),
    Probe("2D CT", "clear error", lambda t: _convert(t, image=sitk.Image([10, 12], sitk.sitkInt16)), "a.nii.gz"),
    Probe("4D CT", "clear error", lambda t: _convert(t, image=sitk.Image([10, 12, 8, 2], sitk.sitkInt16)),
          "a.nii.gz"),
    Probe("256 boxes in one case", "clear error",
          lambda t: _convert(t, rows="".join(f"a,0,0,{k % 8},1,1,{k % 8},voxel,,\n" for k in range(256))), "'a'"),
    Probe("CSV row with an extra field", "clear error", lambda t: _convert(t, rows=ROW.strip() + ",5\n"), "line 2"),
    Probe("Genant grade 7", "clear error", lambda t: _convert(t, rows=ROW.replace(",L1,2", ",L1,7")), "grade"),
    Probe("Genant grade 1e23", "clear error", lambda t: _convert(t, rows=ROW.replace(",L1,2", ",L1,1e23")), "grade"),
    Probe("world box x_max = 9999 mm", "clear error",
          lambda t: _convert(t, rows="a,11,-20,7.5,9999,-18,12.5,world,,\n"), "past the image"),
    Probe("world box at 1e20 mm", "clear error",
          lambda t: _convert(t, rows="a,-1e20,-20,7.5,13,-18,12.5,world,,\n"), "line 2"),
    Probe("world box 5 mm past the scan edge", "accepted",
          lambda t: _convert(t, rows="a,5,-20,7.5,13,-18,12.5,world,,\n"), "clipped"),
    Probe("interrupted convert --overwrite, then run again", "accepted", _interrupted_overwrite, "restored"),
    Probe("phantom under ulimit -f 8 (KB)", "clear error", _file_size_limit, ".nii.gz"),
    Probe("setting num_epochs=-5", "clear error", lambda t: _settings("num_epochs=-5"), "num_epochs"),
    Probe("setting oversample_foreground_percent=2.0", "clear error",
          lambda t: _settings("oversample_foreground_percent=2.0"), "oversample"),
    Probe("setting bag_aggregation=foo", "clear error", lambda t: _settings("bag_aggregation=foo"), "bag_aggregation"),
    Probe("evaluate: prediction without ground truth", "clear error", lambda t: _evaluate(t, extra_prediction=True),
          "--allow-missing"),
    Probe("evaluate: truncated .npz", "clear error", lambda t: _evaluate(t, truncate_npz=True), "a.npz"),
    Probe("evaluate into a non-empty --out", "clear error", lambda t: _evaluate(t, existing_out=True), "--overwrite"),
    Probe("RSNA StudyInstanceUID '..'", "clear error", _rsna_dotdot, "DICOM UID"),
    Probe("reorient: symbolic link out of the dataset", "clear error", _reorient_link, "notes.txt"),
    Probe("attention-maps: crafted checkpoint", "clear error", _crafted_checkpoint, "checkpoint_final.pth"),
]


def classify(rc: int, stderr: str) -> str:
    """``clear error``, ``accepted`` or ``failure`` (see the module docstring)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if rc == 0:
        return "accepted"
    if rc == 1 and lines and "Traceback" not in stderr and ": error: " in lines[-1]:
        return "clear error"
    return "failure"


def run_probe(probe: Probe) -> dict:
    """Run ``probe`` in a fresh temporary folder (restoring ``nnUNet_raw``); its row of the table."""
    saved = os.environ.get("nnUNet_raw")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rc, stderr = probe.run(Path(tmp))
        finally:
            if saved is None:
                os.environ.pop("nnUNet_raw", None)
            else:
                os.environ["nnUNet_raw"] = saved
    lines = [line.split("\r")[-1] for line in stderr.strip().splitlines() if line.strip()]  # (no tqdm bars)
    message = next((line for line in reversed(lines) if probe.needle and probe.needle in line),
                   lines[-1] if lines else "")
    outcome = classify(rc, stderr)
    ok = outcome == probe.expected and (not probe.needle or probe.needle in stderr)
    return {"probe": probe.name, "expected": probe.expected, "outcome": outcome, "ok": ok, "exit": rc,
            "message": message.strip()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "robustness.json")
    args = p.parse_args(argv)
    rows = [run_probe(probe) for probe in PROBES]
    print("| probe | expected | outcome | message |\n|---|---|---|---|")
    for r in rows:
        mark = "" if r["ok"] else " **(unexpected)**"
        print(f"| {r['probe']} | {r['expected']} | {r['outcome']}{mark} | {r['message'][:140]} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"probes": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"{sum(r['ok'] for r in rows)} of {len(rows)} probes as expected; {args.json}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
