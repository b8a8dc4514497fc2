"""The weak-box pipeline's ablation (the README's second table): one row per ingredient, and how an arm's runs relate
to its base's, which decides how the table pairs them (``quality_table.ablation_table``)."""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from quality_arms import ARMS


#: The weak-box pipeline's ablation (README), one ingredient per row: (arm, the arm it adds to or None, what it adds).
#: The table pairs each arm with its base seed by seed; every arm here is declared in
#: ``quality_arms.ARMS``.
ABLATION: tuple[tuple[str, Optional[str], str], ...] = (
    ("box_fill", None, "floor: every box filled"),
    ("hu_threshold", None, "floor: HU above the training cases' best threshold, in each box"),
    ("hu_threshold_inside", "hu_threshold", "floor, kept 1.5 mm inside the boxed vertebra"),
    ("mean_bags", None, "weak model: BCE of each box's mean P (the first recipe)"),
    ("plane_bags", "mean_bags", "plane bags through each box's core (MIL tightness)"),
    ("voxel_bags", "plane_bags", "+ size bounds (the trainer's default until 2026-12-07)"),
    ("plus_affinity", "voxel_bags", "+ HU affinity in the boxes (off by default)"),
    ("voxel_bags_refined", "voxel_bags", "+ random-walker refinement of the pseudo-masks"),
    ("flywheel_size_r1", "voxel_bags_refined", "+ self-training round 1 (stock trainer on the pseudo-masks)"),
    ("flywheel_unsure_r1", "flywheel_size_r1", "+ the 40 % least confident boxes ignored"),
    ("flywheel_unsure", "flywheel_unsure_r1", "+ self-training round 2"),
    ("voxel_bags_inside", "voxel_bags_refined", "+ masks kept 1.5 mm inside the boxed vertebra"),
    ("voxel_bags_dark", "voxel_bags_inside", "+ dark lesions (clefts: the bone 100 HU below its median)"),
    ("weak_bbox", "voxel_bags", "solid plane bags (2 x 2 x 2 cubes) instead of voxels: the trainer's default"),
    ("projection_bags", "weak_bbox", "projection variant: Dice of each box core's max-projection profiles (BoxInst) "
     "instead of the focal plane bags"),
    ("solid_bags_refined", "weak_bbox", "+ random-walker refinement"),
    ("solid_bags_inside", "solid_bags_refined", "+ masks kept 1.5 mm inside the boxed vertebra"),
    ("solid_bags_dark", "solid_bags_inside", "+ dark lesions (clefts: the bone 100 HU below its median)"),
    ("solid_bags_dark_grown", "solid_bags_dark", "+ dark masks grown to the bone 75 HU below the median"),
    ("flywheel_dark_present_r1", "solid_bags_dark", "+ self-training round 1 (faint boxes ignored, PresentDice)"),
    ("flywheel", "flywheel_dark_present_r1", "round 1 on the grown dark masks: the best chain"),
    ("flywheel_cleaned", "flywheel",
     "+ specks removed: components under 10 % of the round labels' typical one"),
    ("flywheel_masks", "flywheel",
     "pseudo-masks again, from the round's model: its P by the same rule, refinement and dark lesions"),
    ("flywheel_dark_present", "flywheel_dark_present_r1", "+ self-training round 2"),
    ("slice_max_bags", None, "slice ranges: each range's maximum P against 1 (WeakSlice's first recipe)"),
    ("slice_plane_bags", "slice_max_bags", "slice ranges: every slice of a range's core a plane bag"),
    ("slice_plane_bags_hn10", "slice_plane_bags", "+ hard negatives (the hardest 10 % of the outside voxels)"),
    ("full_mask", None, "ceiling: the true masks"),
    ("full_mask_polarity", "full_mask", "ceiling + the masks split into dense and lucent classes"),
    ("full_mask_all_foreground", "full_mask", "ceiling with every patch on a fracture (the regime: half)"),
    ("full_mask_all_foreground_mirrored", "full_mask_all_foreground", "+ test-time mirroring (nnU-Net's default)"),
    ("full_mask_all_foreground_mirrored_cleaned", "full_mask_all_foreground_mirrored",
     "+ specks removed: components under 10 % of the typical training fracture"),
    ("full_mask_unmirrored", "full_mask", "ceiling trained again (the models of the next two rows)"),
    ("full_mask_mirrored", "full_mask_unmirrored", "+ test-time mirroring (nnU-Net's default)"),
    ("full_mask_mirrored_cleaned", "full_mask_mirrored", "+ specks removed: components under 10 % of the typical "
     "training fracture"),
    ("full_mask_boxed", "full_mask", "ceiling + its P in the boxes by the pseudo-mask rule (paired runs: "
     "benchmarks/results/quality_reruns/full_mask_2026-12-07)"),
    ("full_mask_cleaned", "full_mask",
     "ceiling + specks removed: components under 10 % of the typical training fracture (paired runs: "
     "benchmarks/results/quality_reruns/full_mask_2026-12-07)"),
)


def relation(arm: str, base: str) -> Optional[str]:
    """How ``arm``'s runs relate to ``base``'s: ``"same_model"`` (it post-processes base's model's predictions, or
    the same source's), ``"continues"`` (one self-training round more of the same recipe), or ``None``."""
    a, b = ARMS[arm], ARMS[base]
    if a.predictions_of is not None and a.predictions_of in (base, b.predictions_of):
        return "same_model"
    if b.self_training_rounds and a == replace(b, self_training_rounds=b.self_training_rounds + 1, note=a.note):
        return "continues"
    return None
