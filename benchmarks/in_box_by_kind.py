"""In-box Dice, precision and recall of masks per fracture kind, on the quality bench's test phantoms.

    python benchmarks/in_box_by_kind.py benchmarks/work/quality/cpu/pseudo_masks/solid_bags_refined_seed0 [...]

Each folder is a ``pseudo-masks`` output (``masks/<case>.nii.gz``) of the bench's test cases, or an
``nnUNetv2_predict`` output (``<case>.nii.gz``: a model's own masks, as the bench scores a self-trained arm in the
boxes). Cases, truth and
boxes with their kinds are read as the bench reads them (``quality_scoring.cases``: the test dataset's
``groundTruthTr`` and ``boxes.json``, the kinds from the test phantom's ``phantom.json``), and voxels are pooled
over the boxes of one kind, as the bench pools them over all boxes (``in_box_dice``). Prints one Markdown row per
folder and kind; ``--json FILE`` also writes the numbers, by folder. Nothing is written into the folders: the
bench fingerprints a prediction folder by its files (``quality_scoring.predictions_id``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_scoring import cases  # noqa: E402

from nnunet_fracture.evaluation.segmentation_metrics import Confusion  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "quality" / "cpu"
TEST_RAW, TEST_PHANTOM = WORK / "nnUNet_raw" / "Dataset799_QualityTest", WORK / "phantom_seed1000_10"


def mask_folder(folder: Path) -> Path | None:
    """Where ``folder``'s masks lie: its ``masks/`` (pseudo-masks), itself if it holds ``.nii.gz`` files (a
    prediction folder), else ``None``."""
    if (folder / "masks").is_dir():
        return folder / "masks"
    return folder if any(folder.glob("*.nii.gz")) else None


def by_kind(folder: Path, raw: Path, phantom: Path) -> dict:
    """``{kind: {"dice", "precision", "recall", "boxes"}}`` of ``folder``'s masks (:func:`mask_folder`) inside each
    kind's boxes (precision ``None`` when nothing is called there)."""
    masks = mask_folder(folder)
    counts: dict[str, tuple[Confusion, int]] = {}
    for case, truth, boxes in cases(raw, phantom):
        if not boxes:
            continue
        called = sitk.GetArrayFromImage(sitk.ReadImage(str(masks / f"{case}.nii.gz"))) > 0
        for box in boxes:
            confusion, n = counts.get(box.kind, (Confusion(0, 0, 0), 0))
            counts[box.kind] = confusion + Confusion.from_masks(called[box.slices()], truth[box.slices()]), n + 1
    return {kind: {"dice": c.dice, "precision": c.precision if c.tp + c.fp else None, "recall": c.recall, "boxes": n}
            for kind, (c, n) in sorted(counts.items())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path,
                   help="pseudo-masks or nnUNetv2_predict output folders of the bench's test cases")
    p.add_argument("--raw", type=Path, default=TEST_RAW, help="the test dataset (default: the cpu regime's)")
    p.add_argument("--phantom", type=Path, default=TEST_PHANTOM, help="the test phantom (default: the cpu regime's)")
    p.add_argument("--json", type=Path, default=None, help="also write {folder: {kind: numbers}} to this file")
    args = p.parse_args(argv)
    for folder in args.folders:
        if mask_folder(folder) is None:
            p.error(f"{folder}: no masks/ folder and no <case>.nii.gz; pass a `nnunet-fracture pseudo-masks` or "
                    f"`nnUNetv2_predict` output folder")
    print("| folder | kind | boxes | Dice | precision | recall |\n|---|---|---|---|---|---|")
    results = {}
    for folder in args.folders:
        result = results[str(folder)] = by_kind(folder, args.raw, args.phantom)
        for kind, r in result.items():
            precision = "-" if r["precision"] is None else f"{r['precision']:.3f}"
            print(f"| {folder.name} | {kind} | {r['boxes']} | {r['dice']:.3f} | {precision} | {r['recall']:.3f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
