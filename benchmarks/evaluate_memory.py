"""Peak memory and time of ``evaluate`` on 20 CT-sized cases (512 x 512 x 300): it must stream, not hold voxels.

    python benchmarks/evaluate_memory.py [--cases 20] [--shape 300 512 512] [--channels 2] [--quick]

What is measured: the real ``evaluate_folder`` (the code behind ``nnunet-fracture evaluate``) with every level
switched on (``--boxes`` as a folder of box-number maps, ``--vertebrae``), reading nnU-Net-style files: per case
``pred/<case>.nii.gz`` (mask), ``pred/<case>.npz`` (``probabilities``, float32, ``--channels`` channels as
``nnUNetv2_predict --save_probabilities`` writes them: 2 = softmax background/fracture, the heavier file),
``gt/<case>.nii.gz``, ``vertebrae/<case>.nii.gz`` and ``labelsTr/<case>.nii.gz``.

To keep disk use and set-up time sane on a small machine, ONE synthetic case is generated and written, and the
other case names are hard links to the same files. ``evaluate`` still opens, decompresses and evaluates every
case from disk separately, so memory and time are those of N distinct cases of that size; only the content
repeats (it has no bearing on memory: every per-case buffer has the volume's size whatever the values).

The evaluation runs in a fresh child process. Reported: its resident-set size after imports (baseline), its
peak RSS (``VmHWM`` from ``/proc/self/status``, Linux) after each case and at the end (figures included),
the tracemalloc peak (numpy buffers; SimpleITK's own buffers are not traced) and the wall time. The reference
sizes: one case's voxels as float32 probability + 1-byte mask (5 bytes per voxel), and all cases' voxels at
that rate, what a non-streaming pooled PR-AUC would hold. Memory in MiB. Prints a table and writes
``evaluate_memory.json`` (``--quick``: ``evaluate_memory_quick.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASE = "case_{:03d}"


def _status_mb(field: str) -> float:
    """A memory field of this process from Linux /proc/self/status, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status; this benchmark needs Linux")


def _rss_mb() -> float:
    """Current resident-set size."""
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    """Peak resident-set size of this process's own memory (VmHWM). Not ``getrusage``'s ``ru_maxrss``: Linux
    carries the parent's peak over into a child started by fork + exec, which would hide the child's own."""
    return _status_mb("VmHWM")


def _synthetic_case(shape: tuple[int, int, int], seed: int = 0) -> dict[str, np.ndarray]:
    """A spine-like case: vertebra slabs, 3 ellipsoid fractures, a probability map that partly overlaps them."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    probability = rng.random(shape, dtype=np.float32)
    probability *= np.float32(0.02)  # background: small, noisy probabilities like a trained network's
    gt = np.zeros(shape, np.uint8)
    vertebrae = np.zeros(shape, np.uint16)
    yy, xx = np.ogrid[:ny, :nx]
    disk = (yy - ny / 2) ** 2 + (xx - nx / 2) ** 2 <= (0.12 * min(ny, nx)) ** 2
    n_vertebrae = 12
    edges = np.linspace(0, nz, n_vertebrae + 1).astype(int)
    for k in range(n_vertebrae):  # T1 (8) ... T12 (19), one slab each, a 2-slice disc gap
        vertebrae[edges[k]:max(edges[k] + 1, edges[k + 1] - 2)][:, disk] = 8 + k
    boxes = []
    radii = np.array([max(2, nz // 40), max(3, ny // 25), max(3, nx // 25)])
    for k, frac in enumerate((0.25, 0.5, 0.75)):
        centre = np.array([int(nz * frac), ny // 2, nx // 2])
        lo, hi = centre - 2 * radii, centre + 2 * radii + 1
        z, y, x = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        inside = ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 \
            + ((x - centre[2]) / radii[2]) ** 2 <= 1
        shifted = ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1] - radii[1] // 2) / radii[1]) ** 2 \
            + ((x - centre[2]) / radii[2]) ** 2 <= 1
        crop = tuple(slice(a, b) for a, b in zip(lo, hi))
        gt[crop][inside] = 1
        probability[crop][shifted] = rng.uniform(0.3, 0.95, int(shifted.sum())).astype(np.float32)
        grow = np.array([1, 4, 4])
        boxes.append(((lo + radii - grow)[::-1], (hi - 1 - radii + grow)[::-1]))  # ITK order i, j, k
    return {"probability": probability, "gt": gt, "vertebrae": vertebrae, "boxes": boxes}


def _write_cases(work: Path, shape: tuple[int, int, int], n_cases: int, channels: int) -> dict:
    import SimpleITK as sitk

    from nnunet_fracture.dataset_conversion.box_geometry import rasterise_boxes
    from nnunet_fracture.dataset_conversion.case import VoxelBox

    start = time.perf_counter()
    case = _synthetic_case(shape)
    first = CASE.format(0)
    folders = {name: work / name for name in ("gt", "pred", "vertebrae", "labelsTr")}
    for folder in folders.values():
        folder.mkdir(parents=True)

    def write(array: np.ndarray, path: Path) -> None:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.8, 0.8, 1.0))
        sitk.WriteImage(image, str(path), True)

    write(case["gt"], folders["gt"] / f"{first}.nii.gz")
    write((case["probability"] >= 0.5).astype(np.uint8), folders["pred"] / f"{first}.nii.gz")
    write(case["vertebrae"], folders["vertebrae"] / f"{first}.nii.gz")
    boxes = [VoxelBox(tuple(int(v) for v in lo), tuple(int(v) for v in hi)) for lo, hi in case["boxes"]]
    write(rasterise_boxes(boxes, shape[::-1], "box"), folders["labelsTr"] / f"{first}.nii.gz")
    probability = case.pop("probability")
    stacked = probability[None] if channels == 1 else np.stack([1 - probability, probability])
    del probability
    np.savez_compressed(folders["pred"] / f"{first}.npz", probabilities=stacked)  # as nnU-Net writes them
    del stacked, case
    sizes = {}
    for key, folder in folders.items():
        for source in folder.glob(f"{first}.*"):
            sizes[f"{key}/{source.name}"] = source.stat().st_size
            for i in range(1, n_cases):
                os.link(source, folder / source.name.replace(first, CASE.format(i)))
    return {"seconds": time.perf_counter() - start, "file_bytes_per_case": sizes}


def _child(work: Path) -> None:
    """Run evaluate_folder in this fresh process and print the measurements as JSON on the last line."""
    import tracemalloc

    from nnunet_fracture.evaluation.report import evaluate_folder
    from nnunet_fracture.evaluation.report_streaming import StreamingEvaluation

    baseline_rss, baseline_peak = _rss_mb(), _peak_mb()
    per_case = []
    add_case = StreamingEvaluation.add_case

    def measured_add_case(self, *args, **kwargs):
        row = add_case(self, *args, **kwargs)
        per_case.append({"peak_rss_mb": _peak_mb(), "seconds": time.perf_counter() - start})
        return row

    StreamingEvaluation.add_case = measured_add_case
    tracemalloc.start()
    start = time.perf_counter()
    summary = evaluate_folder(work / "pred", work / "gt", work / "report", boxes=work / "labelsTr",
                              vertebrae=work / "vertebrae")
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    print(json.dumps({"baseline_rss_mb": baseline_rss, "baseline_peak_mb": baseline_peak, "peak_rss_mb": _peak_mb(),
                      "tracemalloc_peak_mb": traced_peak / 2 ** 20, "seconds": seconds, "per_case": per_case,
                      "pooled_pr_auc": summary["pooled_threshold_free"]["pr_auc"],
                      "case_roc_auc": summary["detection"]["case"]["roc_auc"],
                      "n_cases": summary["n_cases"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=20, help="number of cases (default 20)")
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("Z", "Y", "X"),
                        help="volume shape in array order (default 300 512 512)")
    parser.add_argument("--channels", type=int, choices=(1, 2), default=2,
                        help="probability channels in the npz: 2 = softmax (default, heavier), 1 = region sigmoid")
    parser.add_argument("--quick", action="store_true", help="4 cases of 60 x 128 x 128: checks the script runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child)
        return
    if args.quick:
        args.cases, args.shape = 4, (60, 128, 128)
    shape = tuple(args.shape)
    voxels = int(np.prod(shape))
    work = Path(tempfile.mkdtemp(prefix="nnunet_fracture_evaluate_memory_"))
    try:
        print(f"writing 1 synthetic case of {shape} ({voxels / 1e6:.1f} M voxels) and {args.cases - 1} hard links "
              f"in {work} ...", flush=True)
        written = _write_cases(work, shape, args.cases, args.channels)
        print(f"  {written['seconds']:.0f} s; files per case: "
              + ", ".join(f"{k} {v / 2 ** 20:.0f} MiB" for k, v in written["file_bytes_per_case"].items()), flush=True)
        print(f"evaluating {args.cases} cases in a child process ...", flush=True)
        result = subprocess.run([sys.executable, __file__, "--child", str(work)], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"the evaluation failed:\n{result.stderr[-3000:]}")
        child = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = 2 ** 20
    one_case_mb = voxels * (4 + 1) / mb  # float32 probability + 1-byte mask
    all_cases_mb = args.cases * one_case_mb
    extra = child["peak_rss_mb"] - child["baseline_rss_mb"]
    first, last = child["per_case"][0], child["per_case"][-1]
    rows = [
        ("cases x shape", f"{args.cases} x {shape[0]}x{shape[1]}x{shape[2]} ({voxels / 1e6:.1f} M voxels each)"),
        ("probability channels in npz", str(args.channels)),
        ("RSS after imports (baseline)", f"{child['baseline_rss_mb']:.0f} MiB"),
        ("peak RSS after case 1", f"{first['peak_rss_mb']:.0f} MiB"),
        (f"peak RSS after case {args.cases}", f"{last['peak_rss_mb']:.0f} MiB"),
        ("peak extra over baseline", f"{extra:.0f} MiB"),
        ("tracemalloc peak (numpy buffers)", f"{child['tracemalloc_peak_mb']:.0f} MiB"),
        ("one case, float32 P + 1-byte mask", f"{one_case_mb:.0f} MiB  (peak extra = {extra / one_case_mb:.2f} x)"),
        (f"all {args.cases} cases' voxels held",
         f"{all_cases_mb:.0f} MiB  (peak extra = {extra / all_cases_mb:.3f} x)"),
        ("evaluate wall time", f"{child['seconds']:.0f} s ({child['seconds'] / args.cases:.1f} s per case)"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    result = {
        "what": "evaluate_folder with boxes (box-number maps) and vertebrae, fresh child process; one synthetic "
                "case written to disk, the other case names hard links to its files",
        "units": "memory in MiB (2**20 bytes), time in seconds",
        "cases": args.cases, "shape_zyx": list(shape), "voxels_per_case": voxels, "npz_channels": args.channels,
        "file_bytes_per_case": written["file_bytes_per_case"],
        "baseline_rss_mb": round(child["baseline_rss_mb"], 1),
        "peak_rss_mb_after_first_case": round(first["peak_rss_mb"], 1),
        "peak_rss_mb_after_last_case": round(last["peak_rss_mb"], 1),
        "peak_rss_mb_per_case": [round(c["peak_rss_mb"]) for c in child["per_case"]],
        "peak_rss_mb_at_end": round(child["peak_rss_mb"], 1),
        "peak_extra_mb": round(extra, 1),
        "tracemalloc_peak_mb": round(child["tracemalloc_peak_mb"], 1),
        "one_case_float32_plus_mask_mb": round(one_case_mb, 1),
        "all_cases_float32_plus_mask_mb": round(all_cases_mb, 1),
        "peak_extra_vs_one_case": round(extra / one_case_mb, 3),
        "peak_extra_vs_all_cases": round(extra / all_cases_mb, 4),
        "evaluate_seconds": round(child["seconds"], 1),
        "seconds_per_case": round(child["seconds"] / args.cases, 2),
        "pooled_pr_auc": child["pooled_pr_auc"],
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "evaluate_memory_quick.json" if args.quick else "evaluate_memory.json"
    (args.out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out / name}")


if __name__ == "__main__":
    main()
