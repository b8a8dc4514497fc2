"""The weak-box trainers' recipes of the quality bench, as ``NNUNET_FRACTURE_SETTINGS`` strings
(``benchmarks/quality_arms.py`` declares the arms that train with them).

Every recipe spells out its settings, the trainer's defaults included, so that a change of a default cannot
reuse a cached run (a run's key hashes the arm's settings string).
"""
from __future__ import annotations

#: the box priors replace the first losses (L1-L3: outside background, box MIL, contrast)
PRIORS_OFF = "lambda_outside=0 lambda_mil=0 lambda_contrast=0"
#: plane bags + size bounds
BAG_PRIORS = f"{PRIORS_OFF} lambda_tightness=1 lambda_size=0.1"
#: nnUNetTrainerWeakBBox's default recipe since 2026-12-07, spelled out (a test checks it equals the trainer's
#: defaults): solid plane bags + size bounds
DEFAULT_RECIPE = f"{BAG_PRIORS} tightness_window=2"
# the default recipe of 2026-12-06/07 (voxel plane bags + size bounds) ...
VOXEL_RECIPE = f"{BAG_PRIORS} tightness_window=1"
# ... and the one before it (plus HU affinity); the arms measured on their weak models keep them
AFFINITY_RECIPE = f"{VOXEL_RECIPE} lambda_affinity=1"
#: nnUNetTrainerWeakSlice's first recipe, spelled out: one bag per slice range, its maximum, with L1 and L3
SLICE_MAX_BAGS = ("lambda_outside=1 lambda_mil=1 lambda_contrast=0.1 bag_aggregation=max lambda_tightness=0 "
                  "lambda_size=0")
#: slice ranges through the plane bags: each slice of a range's core is a bag, nothing asked in-plane. A slice of a
#: 48 x 48 patch is a bag of 2,304 voxels: the alpha-softmax with alpha = 4 needs ~400 voxels at P = 1 for S = 0.9
#: (a whole vertebral body's cross-section), with alpha = 8 twenty (Wang & Xia's range is 4-8)
SLICE_PLANE_BAGS = (f"{PRIORS_OFF} lambda_tightness=1 tightness_planes=slice tightness_window=2 smooth_max_alpha=8 "
                    "lambda_size=0")
#: nnUNetTrainerWeakBBox's first recipe (its default until 2026-12-05): each box one bag, BCE of its mean P, with L1
#: and L3
MEAN_BAGS = ("lambda_outside=1 lambda_mil=1 lambda_contrast=0.1 bag_aggregation=mean lambda_tightness=0 lambda_size=0 "
             "lambda_affinity=0")
