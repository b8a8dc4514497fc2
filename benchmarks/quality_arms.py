"""The quality bench's arms, declared as data (``benchmarks/quality.py`` runs them; the regimes they run in are
``benchmarks/quality_regimes.py``).

An arm is a trainer, the kind of labels it trains on (``mask``: true masks; ``box``: box numbers; ``slice``: slice
ranges), the ``NNUNET_FRACTURE_SETTINGS`` it adds, and for weak arms the pseudo-mask rule that turns its
probabilities into masks inside the boxes. Two arms need no training: the floor references ``box_fill`` (every
box filled) and ``hu_threshold`` (inside each box, the voxels above one HU threshold, chosen on the training
cases). A new method is one more entry in :data:`ARMS`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Optional

from quality_recipes import (AFFINITY_RECIPE, DEFAULT_RECIPE, MEAN_BAGS, PRIORS_OFF, SLICE_MAX_BAGS, SLICE_PLANE_BAGS,
                             VOXEL_RECIPE)
from quality_regimes import Regime


_ADDED_LATER = ("refine", "self_training_rounds", "ignore_band", "ignore_ring", "ignore_unsure", "predictions_of",
                "inside_vertebra", "ignore_faint", "strong_trainer", "dark_lesions", "ignore_dark_margin", "dark_grow",
                "min_component", "round_pseudo_masks", "mirroring")


@dataclass(frozen=True)
class Arm:
    trainer: Optional[str]  # None: a reference computed without training
    labels: str = "mask"  # mask | box | slice: the converter's --weak mode of the training dataset; mask_polarity:
    # the masks split into dense and lucent classes (nnunet_fracture.dataset_conversion.polarity_classes)
    settings: str = ""  # NNUNET_FRACTURE_SETTINGS of this arm, after the regime's schedule
    pseudo_masks: Optional[str] = None  # pseudo-mask rule (weak arms): in_box_dice scores these masks
    reference: Optional[str] = None  # box_fill | hu_threshold
    channel: Optional[str] = None  # vae_error: a VAE error map as input channel _0001 (nnUNetTrainerNormalVAE)
    channel_settings: str = ""  # NNUNET_FRACTURE_SETTINGS of the VAE trainer, after the regime's schedule
    refine: Optional[str] = None  # pseudo-masks --refine METHOD (weak arms)
    self_training_rounds: Optional[int] = None  # self-train rounds after the weak model (scored: the last model)
    ignore_band: Optional[tuple[float, float]] = None  # the self-training rounds' ignore band
    ignore_ring: Optional[int] = None  # the self-training rounds' ignore ring (voxels at each mask's border)
    ignore_unsure: Optional[float] = None  # the self-training rounds' share of least confident boxes ignored whole
    predictions_of: Optional[str] = None  # reuse that arm's test predictions of the seed (same model), e.g. to
    # score a pseudo-mask refinement without training again; the recipe (trainer, labels, settings) must match
    note: str = ""
    inside_vertebra: Optional[float] = None  # pseudo-masks --inside-vertebra SHELL_MM (weak and self-training arms)
    ignore_faint: Optional[float] = None  # the self-training rounds' --ignore-faint-boxes HU
    strong_trainer: Optional[str] = None  # the self-training rounds' trainer (None: quality.STRONG_TRAINER)
    dark_lesions: Optional[float] = None  # pseudo-masks --dark-lesions HU (weak and self-training arms)
    ignore_dark_margin: Optional[int] = None  # the self-training rounds' --ignore-dark-margin VOXELS
    dark_grow: Optional[float] = None  # pseudo-masks --dark-grow HU (with dark_lesions)
    min_component: Optional[float] = None  # postprocess --fraction: the segmentation's components under this share
    # of the typical labelled component of the model's training dataset removed (models trained on masks)
    round_pseudo_masks: Optional[bool] = None  # self-training arms: score the pseudo-masks that the last round's
    # model gives by the arm's rule, refinement and options in the boxes (not its own segmentation there)
    mirroring: Optional[bool] = None  # test-time mirroring of this arm's own predictions (None: the regime's); the
    # model is the one an arm of the same recipe without it trains (Workspace.train reuses it)

    def label_options(self, ignores: bool):
        """The arm's pseudo-mask options as one checked ``LabelOptions``: where masks lie and how dark lesions are
        drawn, and with ``ignores`` also which voxels a self-training round's labels leave to nnU-Net's ignore label
        (scoring writes no labels, so it takes none)."""
        from nnunet_fracture.inference.label_options import LabelOptions

        shape = dict(inside_vertebra=self.inside_vertebra, dark_lesions=self.dark_lesions or 0.0,
                     dark_grow=self.dark_grow or 0.0)
        if not ignores:
            return LabelOptions(**shape)
        return LabelOptions(**shape, ignore_band=self.ignore_band, ignore_ring=self.ignore_ring or 0,
                            ignore_unsure=self.ignore_unsure or 0.0, ignore_faint=self.ignore_faint or 0.0,
                            ignore_dark_margin=self.ignore_dark_margin or 0)


# one self-training round on the solid-bag weak model (weak_bbox's recipe), its labels kept inside the boxed
# vertebra; the flywheel_solid_* and flywheel_dark_* arms add to it
_SOLID_ROUND = Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                   settings=DEFAULT_RECIPE, self_training_rounds=1, ignore_band=(0.2, 0.5),
                   inside_vertebra=1.5)
# ... with faint boxes ignored and the round trained by nnUNetTrainerPresentDice
_PRESENT_ROUND = replace(_SOLID_ROUND, ignore_faint=100.0, strong_trainer="nnUNetTrainerPresentDice")
# a weak model's refined pseudo-masks kept 1.5 mm inside the boxed vertebra: on the solid-bag model (weak_bbox)
# and on the voxel-bag model (voxel_bags); the *_inside and *_dark arms (dark lesions added) build on them
_SOLID_INSIDE = Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                    settings=DEFAULT_RECIPE, predictions_of="weak_bbox",
                    inside_vertebra=1.5)
_VOXEL_INSIDE = replace(_SOLID_INSIDE, settings=VOXEL_RECIPE, predictions_of="voxel_bags")
# the full-mask recipe (the ceiling), and the same with every patch centred on a fracture voxel
_FULL_MASK = Arm("nnUNetTrainerFracture")
_ALL_FOREGROUND = replace(_FULL_MASK, settings="oversample_foreground_percent=1.0")
#: the fields that only shape a self-training round's labels and training: the weak model under an arm is the same
#: without them (its predictions are shared)
ROUND_ONLY_FIELDS = ("ignore_ring", "ignore_unsure", "inside_vertebra", "ignore_faint", "strong_trainer",
                     "dark_lesions", "ignore_dark_margin", "dark_grow")

_RULES = {"fraction": "pseudo-masks by the fraction rule (top 30 % of each box by P)",
          "otsu": "pseudo-masks by Otsu's threshold of P in each box",
          "fixed": "its pseudo-masks refined by the random walker on the CT"}


def _masks_of(model: str, settings: str, rule: str) -> Arm:
    """Another pseudo-mask rule (or, for ``fixed``, the random walker) on the weak model of arm ``model``."""
    return Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks=rule, settings=settings, predictions_of=model,
               refine="random_walker" if rule == "fixed" else None, note=f"{model}'s model, {_RULES[rule]}")


def _specks_removed(source: str, recipe: Arm) -> Arm:
    """Arm ``source``'s segmentations (a model of the full-mask ``recipe``) without their small components."""
    return replace(recipe, predictions_of=source, min_component=0.1,
                   note=f"{source}'s segmentations without their components under 10 % of the typical training "
                        "fracture's volume (nnunet-fracture postprocess --dataset)")


ARMS: dict[str, Arm] = {
    "full_mask": Arm("nnUNetTrainerFracture", note="stock-equivalent Dice + CE on the true masks: the ceiling"),
    "full_mask_present": Arm("nnUNetTrainerPresentDice",
                             note="full_mask with nnUNetTrainerPresentDice: no Dice reward for predicting nothing on "
                                  "patches without foreground"),
    "full_mask_polarity": Arm("nnUNetTrainerFracture", labels="mask_polarity",
                              note="full_mask on the true masks split by polarity into two classes (dense bands, "
                                   "lucent clefts; from the CT, no annotation added): nnU-Net draws each class of "
                                   "a case equally often and scores each class's Dice"),
    "full_mask_all_foreground": replace(_ALL_FOREGROUND, note="full_mask with every patch centred on a fracture voxel "
                                        "(the regime draws half of them at random): the stock runs predict nothing "
                                        "for their first 37-78 of 120 epochs"),
    "full_mask_all_foreground_mirrored": replace(_ALL_FOREGROUND, mirroring=True,
                                                 note="full_mask_all_foreground's models predicting with nnU-Net's "
                                                      "default test-time mirroring (the cpu regime predicts without)"),
    "full_mask_all_foreground_mirrored_cleaned": _specks_removed("full_mask_all_foreground_mirrored", _ALL_FOREGROUND),
    "full_mask_unmirrored": Arm("nnUNetTrainerFracture", mirroring=False,
                                note="full_mask_mirrored's models predicting without mirroring (full_mask's recipe; "
                                     "the run key differs, so the current models predict again): its paired base"),
    "full_mask_mirrored": Arm("nnUNetTrainerFracture", mirroring=True,
                              note="full_mask's models predicting with nnU-Net's default test-time mirroring"),
    "full_mask_mirrored_cleaned": _specks_removed("full_mask_mirrored", _FULL_MASK),
    "full_mask_boxed": Arm("nnUNetTrainerFracture", predictions_of="full_mask", pseudo_masks="fixed",
                           refine="random_walker", inside_vertebra=1.5, dark_lesions=100.0, dark_grow=75.0,
                           note="full_mask's P in each box by the weak pipeline's rule (fixed 0.5, random walker, "
                                "1.5 mm inside the vertebra, dark lesions grown): the boxes' help to a full-mask "
                                "model, beside flywheel_masks"),
    "full_mask_cleaned": _specks_removed("full_mask", _FULL_MASK),
    "box_fill": Arm(None, labels="box", reference="box_fill", note="every box filled: the floor"),
    "hu_threshold": Arm(None, labels="box", reference="hu_threshold",
                        note="inside each box, HU above the threshold that is best on the training cases"),
    "box_fill_inside": Arm(None, labels="box", reference="box_fill", inside_vertebra=1.5,
                           note="every box filled inside its vertebra, the outer 1.5 mm left out: the floor of "
                                "--inside-vertebra 1.5"),
    "hu_threshold_inside": Arm(None, labels="box", reference="hu_threshold", inside_vertebra=1.5,
                               note="hu_threshold inside each box's vertebra, the outer 1.5 mm left out (threshold "
                                    "best on the training cases' same region)"),
    "mean_bags": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fraction", settings=MEAN_BAGS,
                     note="the first recipe (the trainer's default until 2026-12-05): each box one bag, its mean P "
                          "pushed to 1 (L2), outside voxels to 0 (L1), a contrast margin (L3); 30 % of each box kept"),
    "plane_bags": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed",
                      settings=f"{PRIORS_OFF} lambda_tightness=1 tightness_window=1",
                      note="plane bags with a smooth maximum and focal unary (Wang & Xia in 3D), P >= 0.5 in boxes"),
    # the trainer's default recipe of 2026-12-06/07 (called plus_size before it became the default, weak_bbox while
    # it was); cached results are keyed by the recipe, not the name
    "voxel_bags": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", settings=VOXEL_RECIPE,
                      note="plane bags + size bounds (Kervadec log-barrier), P >= 0.5 in the boxes: the default "
                           "recipe until 2026-12-07"),
    "plus_affinity": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", settings=AFFINITY_RECIPE,
                         note="voxel_bags + HU affinity (BoxInst in 3D): the default recipe until 2026-12-06"),
    "plus_border_affinity": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed",
                                settings=f"{VOXEL_RECIPE} lambda_affinity=1 affinity_border_pairs=true",
                                note="voxel_bags + HU affinity with pairs across the box border, the outside voxel "
                                     "as background: known background flows into the box along like density"),
    "plus_smoothness": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed",
                           settings=f"{VOXEL_RECIPE} lambda_smoothness=1",
                           note="voxel_bags + Wang & Xia's pairwise smoothness inside the boxes, (p_i - p_j)^2 over "
                                "the 26-neighbourhood (weight 1: our unary terms are means, theirs sums over N+)"),
    # the trainer's default recipe, spelled out (tests/benchmarks/test_quality_bench.py checks it equals the
    # defaults); called plus_solid_bags before it became the default
    "weak_bbox": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", settings=DEFAULT_RECIPE,
                     note="the default recipe: voxel_bags with each plane bag scoring the mean P of 2 x 2 x 2 cubes "
                          "(solid bags; a voxel-bag model can answer in a lattice, every other voxel of a slice on, "
                          "which single-voxel bags accept), P >= 0.5 in the boxes"),
    "projection_bags": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed",
                           settings="lambda_outside=1 lambda_mil=0 lambda_contrast=0 lambda_tightness=0 "
                                    "lambda_projection=1 lambda_size=0.1 tightness_window=2",
                           note="weak_bbox with the projection variant of tightness in place of the focal plane "
                                "bags: per box and axis, the Dice of the core's max-projection profile against "
                                "all ones (BoxInst), outside voxels as background (L1); P >= 0.5 in the boxes"),
    "solid_bags_otsu": _masks_of("weak_bbox", DEFAULT_RECIPE, "otsu"),
    "solid_bags_refined": _masks_of("weak_bbox", DEFAULT_RECIPE, "fixed"),
    "plus_rim": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed",
                    settings=f"{VOXEL_RECIPE} box_rim_mm=1.5",
                    note="voxel_bags with each box's outermost voxel layer trained as background (the phantom's boxes "
                         "clear the fracture by 1-4 voxels)"),
    "plus_hard_negatives": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed",
                               settings=f"{AFFINITY_RECIPE} tightness_outside_top=0.01",
                               note="plus_affinity with the outside term averaged over the hardest 1 % of outside "
                                    "voxels (online hard example mining)"),
    "plus_hard_negatives_10": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed",
                                  settings=f"{VOXEL_RECIPE} tightness_outside_top=0.1",
                                  note="voxel_bags with the outside term averaged over the hardest 10 % of outside "
                                       "voxels: healthy cancellous bone, which the flywheel's models mark in every "
                                       "vertebral body, among the voxels that count"),
    "rule_fraction": _masks_of("plus_affinity", AFFINITY_RECIPE, "fraction"),
    "rule_otsu": _masks_of("plus_affinity", AFFINITY_RECIPE, "otsu"),
    "plus_refinement": _masks_of("plus_affinity", AFFINITY_RECIPE, "fixed"),
    "voxel_bags_fraction": _masks_of("voxel_bags", VOXEL_RECIPE, "fraction"),
    "voxel_bags_otsu": _masks_of("voxel_bags", VOXEL_RECIPE, "otsu"),
    "voxel_bags_refined": _masks_of("voxel_bags", VOXEL_RECIPE, "fixed"),
    "flywheel_r1": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                       settings=AFFINITY_RECIPE, self_training_rounds=1, ignore_band=(0.2, 0.5),
                       note="plus_refinement's pseudo-masks on the training cases -> one stock training round"),
    # called flywheel until 2026-12-07, when that name went to the best chain
    "flywheel_affinity": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                             settings=AFFINITY_RECIPE, self_training_rounds=2, ignore_band=(0.2, 0.5),
                             note="two self-training rounds on plus_refinement's pseudo-masks (the first flywheel)"),
    "flywheel_r3": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                       settings=AFFINITY_RECIPE, self_training_rounds=3, ignore_band=(0.2, 0.5),
                       note="a third self-training round (continues flywheel_affinity's run): does it "
                            "still help?"),
    "flywheel_ring": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                         settings=AFFINITY_RECIPE, self_training_rounds=1, ignore_band=(0.2, 0.5), ignore_ring=1,
                         note="flywheel_r1 with each pseudo-mask's outer voxel 'ignore' (Simple Does It's ring): "
                              "the round's masks are about one voxel too thick"),
    "flywheel_size_r1": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                            settings=VOXEL_RECIPE, self_training_rounds=1, ignore_band=(0.2, 0.5),
                            note="flywheel_r1 on voxel_bags' weak model (the default recipe then: no HU affinity)"),
    "flywheel_hn10_r1": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                            settings=f"{VOXEL_RECIPE} tightness_outside_top=0.1", self_training_rounds=1,
                            ignore_band=(0.2, 0.5),
                            note="flywheel_r1 on plus_hard_negatives_10's weak model: do fewer false positives of "
                                 "the weak model carry into the strong one?"),
    "flywheel_unsure_r1": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                              settings=VOXEL_RECIPE, self_training_rounds=1, ignore_band=(0.2, 0.5),
                              ignore_unsure=0.4,
                              note="flywheel_size_r1 with the 40 % of boxes whose pseudo-mask has the lowest mean P "
                                   "labelled 'ignore' whole (BoxTeacher's mask confidence): the weak model's "
                                   "cleft-box blobs no longer teach the strong model"),
    "flywheel_unsure": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed", refine="random_walker",
                           settings=VOXEL_RECIPE, self_training_rounds=2, ignore_band=(0.2, 0.5), ignore_unsure=0.4,
                           note="a second round of flywheel_unsure_r1 (continues its run), the unsure boxes ranked "
                                "again on the round-1 model's predictions"),
    "flywheel_solid_unsure_r1": Arm("nnUNetTrainerWeakBBox", labels="box", pseudo_masks="fixed",
                                    refine="random_walker", settings=DEFAULT_RECIPE,
                                    self_training_rounds=1, ignore_band=(0.2, 0.5), ignore_unsure=0.4,
                                    note="flywheel_unsure_r1 on weak_bbox's weak model"),
    "solid_bags_inside": replace(_SOLID_INSIDE, note="solid_bags_refined's masks kept inside the boxed vertebra, its "
                                                     "outer 1.5 mm (the cortical shell at 1.5 mm voxels) left out"),
    "solid_bags_dark": replace(_SOLID_INSIDE, dark_lesions=100.0,
                               note="solid_bags_inside + dark lesions: a box whose P prefers the darker half of its "
                                    "bone gets the bone 100 HU below its median as its mask"),
    "solid_bags_dark_grown": replace(_SOLID_INSIDE, dark_lesions=100.0, dark_grow=75.0,
                                     note="solid_bags_dark with each dark mask grown through its bone 75 HU below "
                                          "the median (hysteresis)"),
    "voxel_bags_inside": replace(_VOXEL_INSIDE, note="voxel_bags_refined's masks kept 1.5 mm inside the boxed "
                                                     "vertebra: solid_bags_inside on voxel bags"),
    "voxel_bags_dark": replace(_VOXEL_INSIDE, dark_lesions=100.0,
                               note="voxel_bags_inside + dark lesions: solid_bags_dark on voxel bags"),
    "flywheel_solid_inside_r1": replace(_SOLID_ROUND, ignore_unsure=0.4,
                                        note="flywheel_solid_unsure_r1 with its round labels kept inside the boxed "
                                             "vertebra, 1.5 mm under its surface"),
    "flywheel_solid_faint_r1": replace(_SOLID_ROUND, ignore_unsure=0.4, ignore_faint=100.0,
                                       note="flywheel_solid_inside_r1 with the boxes whose mask differs from the rest "
                                            "of the box by less than 100 HU ignored whole"),
    "flywheel_solid_faint_present_r1": replace(_PRESENT_ROUND, ignore_unsure=0.4,
                                               note="flywheel_solid_faint_r1 with the round trained by "
                                                    "nnUNetTrainerPresentDice: no Dice reward for predicting nothing "
                                                    "on a patch without foreground"),
    "flywheel_solid_faint_present": replace(_PRESENT_ROUND, ignore_unsure=0.4, self_training_rounds=2,
                                            note="a second round of flywheel_solid_faint_present_r1 (continues its "
                                                 "run), its labels from the round-1 model's predictions"),
    "flywheel_dark_present_r1": replace(_PRESENT_ROUND, dark_lesions=100.0,
                                        note="flywheel_solid_faint_present_r1 with the clefts in its labels: a box "
                                             "whose weak P prefers the darker half of its bone gets the bone 100 HU "
                                             "below its median (--dark-lesions 100); no unsure boxes ignored (that "
                                             "share held the cleft boxes)"),
    "flywheel_dark_present": replace(_PRESENT_ROUND, dark_lesions=100.0, self_training_rounds=2,
                                     note="a second round of flywheel_dark_present_r1 (continues its run where its "
                                          "round-1 model is still there), its labels from the round-1 model's "
                                          "predictions, dark lesions again"),
    "flywheel_dark_margin_r1": replace(_PRESENT_ROUND, dark_lesions=100.0, ignore_dark_margin=2,
                                       note="flywheel_dark_present_r1 with the 2 voxels around each dark lesion's mask "
                                            "'ignore' (--ignore-dark-margin 2): its edges and its course through the "
                                            "cortex are no longer taught as background"),
    # the best chain, as the issue names it (called flywheel_dark_grown_r1 until 2026-12-07)
    "flywheel": replace(_PRESENT_ROUND, dark_lesions=100.0, dark_grow=75.0,
                        note="the best chain: flywheel_dark_present_r1 with each dark lesion's mask grown through its "
                             "bone 75 HU below the median (--dark-grow 75, solid_bags_dark_grown's masks); one round"),
    "flywheel_cleaned": replace(_PRESENT_ROUND, dark_lesions=100.0, dark_grow=75.0, predictions_of="flywheel",
                                min_component=0.1,
                                note="flywheel's segmentations without their components under 10 % of the typical "
                                     "component of the round's labels (nnunet-fracture postprocess --dataset ROUND)"),
    "flywheel_masks": replace(_PRESENT_ROUND, dark_lesions=100.0, dark_grow=75.0, predictions_of="flywheel",
                              round_pseudo_masks=True,
                              note="pseudo-masks of flywheel's model: its P in each box by the weak model's rule "
                                   "(fixed 0.5, random walker, 1.5 mm inside the vertebra, dark lesions grown)"),
    "slice_max_bags": Arm("nnUNetTrainerWeakSlice", labels="slice", settings=SLICE_MAX_BAGS,
                          note="slice ranges alone, WeakSlice's first recipe: each range's maximum P (one bag per "
                               "range and patch), outside background, contrast; in-box numbers from P >= 0.5 in the "
                               "boxes"),
    "slice_plane_bags": Arm("nnUNetTrainerWeakSlice", labels="slice", settings=SLICE_PLANE_BAGS,
                            note="slice ranges alone through the tightness prior: every slice of a range's core "
                                 "(6 mm of overhang left out) a bag of 2 x 2 x 2 cube means, its smooth maximum "
                                 "(alpha 8) against 1, no in-plane bags, no size bound; in-box numbers from "
                                 "P >= 0.5 in the boxes"),
    "slice_plane_bags_hn10": Arm("nnUNetTrainerWeakSlice", labels="slice",
                                 settings=f"{SLICE_PLANE_BAGS} tightness_outside_top=0.1",
                                 note="slice_plane_bags with the outside term averaged over the hardest 10 % of the "
                                      "outside voxels (slice_plane_bags painted the bone of every slice)"),
    "polydice_mcd": Arm("nnUNetTrainerPolyDiceMCD", note="PolyDice-1 + CE, MC-Dropout per-image epsilon"),
    "focal_tversky": Arm("nnUNetTrainerFocalTversky", note="Focal Tversky + focal loss"),
    # spelled out, not left to the trainer's defaults, so that a change of default cannot reuse a cached run
    "adversarial": Arm("nnUNetTrainerAdversarial", settings="lambda_adversarial=0.01 adversarial_start=0.5",
                       note="nnU-Net's Dice + CE, + 0.01 x a conditional PatchGAN's loss (pix2pix) from half-way"),
    # the trainer's first defaults (until 2026-12-07): collapsed on seed 0
    "adversarial_undelayed": Arm("nnUNetTrainerAdversarial", settings="lambda_adversarial=0.1 adversarial_start=0",
                                 note="nnU-Net's Dice + CE + 0.1 x the PatchGAN's loss from the first step"),
    "attention": Arm("nnUNetTrainerAttentionUNet", note="attention gates on every skip"),
    "slice_lstm": Arm("nnUNetTrainerSliceLSTM", note="2.5D: 2D encoder per slice + ConvLSTM"),
    "cls_head": Arm("nnUNetTrainerClsHead", note="classification head, P_class x P_seg"),
    "vae_channel": Arm("nnUNetTrainerWeakBBox", labels="box", settings=f"{MEAN_BAGS} lambda_consistency=0.1",
                       pseudo_masks="fraction", channel="vae_error",
                       channel_settings="vae_beta=0.1 vae_beta_warmup_epochs=5 vae_box_margin=4",
                       note="weak boxes with the VAE error map as input channel and L4"),
}

ARM_SETS: dict[str, tuple[str, ...]] = {
    "core": ("full_mask", "box_fill", "hu_threshold", "weak_bbox"),
    "weak_vs_full": ("full_mask", "weak_bbox", "box_fill"),
    "loss_quality": ("full_mask", "polydice_mcd", "focal_tversky", "full_mask_present", "adversarial",
                     "adversarial_undelayed"),
    "networks": ("full_mask", "attention", "slice_lstm", "cls_head"),
    "vae_prior": ("mean_bags", "vae_channel"),
    # the ablation of the weak-box recipe, one ingredient per row (README)
    "weak_recipe": ("full_mask", "box_fill", "hu_threshold", "box_fill_inside", "hu_threshold_inside", "mean_bags",
                    "plane_bags", "voxel_bags", "plus_affinity", "plus_hard_negatives", "rule_fraction", "rule_otsu",
                    "plus_refinement", "voxel_bags_fraction", "voxel_bags_otsu", "voxel_bags_refined", "flywheel_r1",
                    "flywheel_affinity", "flywheel_r3", "flywheel_ring", "flywheel_size_r1", "plus_border_affinity",
                    "plus_rim", "plus_hard_negatives_10", "flywheel_hn10_r1", "flywheel_unsure_r1", "flywheel_unsure",
                    "plus_smoothness", "weak_bbox", "solid_bags_otsu", "solid_bags_refined",
                    "flywheel_solid_unsure_r1", "solid_bags_inside", "solid_bags_dark", "solid_bags_dark_grown",
                    "voxel_bags_inside", "voxel_bags_dark", "flywheel_solid_inside_r1", "flywheel_solid_faint_r1",
                    "flywheel_solid_faint_present_r1", "flywheel_solid_faint_present", "flywheel_dark_present_r1",
                    "flywheel_dark_present", "flywheel_dark_margin_r1", "flywheel", "flywheel_cleaned",
                    "projection_bags"),
    # speck removal paired with the model it cleans; full_mask_cleaned pairs only with a full_mask run whose
    # predictions are in the workspace, so its runs live in benchmarks/results/quality_reruns/full_mask_2026-12-07
    "postprocess": ("flywheel", "flywheel_cleaned", "full_mask_mirrored", "full_mask_mirrored_cleaned"),
    # the pipeline's last pseudo-masks: the round's model in place of the weak model
    "round_masks": ("flywheel", "flywheel_masks"),
    "polarity": ("full_mask_polarity",),
    # slice ranges (nnUNetTrainerWeakSlice): one max bag per range against every slice of its core a bag
    "slices": ("slice_max_bags", "slice_plane_bags", "slice_plane_bags_hn10"),
    "all": tuple(ARMS),
}


def check_arms() -> None:
    """An arm that reuses another's predictions must train the same model, one that removes specks by the
    training masks' volume (``min_component``) must have a model trained on masks, and one that scores a round's
    pseudo-masks (``round_pseudo_masks``) must have rounds and a rule, and one that sets test-time mirroring must
    predict with a model of its own.

    Raises:
        ValueError: naming the arm and the field that differs.
    """
    for name, arm in ARMS.items():
        trained = ARMS.get(arm.predictions_of, arm)
        if arm.round_pseudo_masks and not (arm.self_training_rounds and arm.pseudo_masks):
            raise ValueError(f"arm {name}: round_pseudo_masks needs self-training rounds and a pseudo-mask rule")
        if arm.min_component and not (trained.labels == "mask" or trained.self_training_rounds):
            raise ValueError(f"arm {name}: min_component scales the volume of the training masks, but its model "
                             f"trains on {trained.labels}")
        if arm.mirroring is not None and (arm.predictions_of or arm.self_training_rounds or arm.reference):
            raise ValueError(f"arm {name}: mirroring sets how the arm's own model predicts; it has none of its own "
                             "(predictions_of, self-training rounds or a reference)")
        if arm.predictions_of is None:
            continue
        source = ARMS.get(arm.predictions_of)
        if source is None:
            raise ValueError(f"arm {name}: predictions_of names an unknown arm {arm.predictions_of!r}")
        for field_name in ("trainer", "labels", "settings", "channel", "channel_settings", "self_training_rounds"):
            if getattr(arm, field_name) != getattr(source, field_name):
                raise ValueError(f"arm {name}: reuses the predictions of {arm.predictions_of} but its {field_name} "
                                 "differs")


def run_key(arm: Arm, regime: Regime, seed: int, phantom_version: str) -> str:
    """Short hash of everything that decides an arm x seed result: a cached result is reused only if it matches."""
    # fields added after results were cached count only when set, so that adding one keeps the old keys valid
    recipe = {k: v for k, v in asdict(arm).items() if k != "note" and not (k in _ADDED_LATER and v is None)}
    blob = json.dumps({"arm": recipe, "regime": asdict(regime), "seed": seed, "phantom": phantom_version},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]
