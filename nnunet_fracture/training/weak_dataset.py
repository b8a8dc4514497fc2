"""Which datasets a weak-label trainer accepts: box numbers under one fracture region, written with the trainer's
``--weak`` mode (the converter records it in ``dataset.json``)."""
from __future__ import annotations

from typing import Optional


def check_weak_dataset(label_manager, dataset_json: dict, trainer: str, weak_modes: tuple[str, ...]) -> Optional[str]:
    """Raise ``RuntimeError`` with the fix when the dataset does not suit ``trainer``; return a note to log when
    ``dataset.json`` has no provenance (its labels are then taken as box numbers), else None."""
    if not label_manager.has_regions or len(label_manager.foreground_regions) != 1:
        raise RuntimeError(
            f"{trainer} needs a weak-box dataset: labels {{background: 0, fracture: [1, 2, ...]}} (one region "
            f"whose label values are box numbers), but dataset.json declares {dataset_json.get('labels')}. "
            f"Fix: write the dataset with `nnunet-fracture convert ... --weak {weak_modes[0]}`.")
    weak = (dataset_json.get("nnunet_fracture") or {}).get("weak")
    if weak is None:
        return f"{trainer}: dataset.json has no nnunet_fracture provenance; treating its label values as box numbers"
    if weak not in weak_modes:
        raise RuntimeError(
            f"{trainer} is meant for datasets written with --weak {' or '.join(weak_modes)}, but this one "
            f"was written with --weak {weak}. Fix: use "
            f"{'nnUNetTrainerWeakSlice' if weak == 'slice' else 'nnUNetTrainerWeakBBox'} or convert again.")
    return None
