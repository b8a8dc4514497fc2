"""The box priors' side of a weak-box trainer: their settings (:class:`BoxPriorSettings`, a mixin), and what the
losses need from the trainer - millimetres turned into voxels, the patch back in HU, and the size barrier's
sharpness per epoch (:class:`~nnunet_fracture.losses.WeakBoxLoss`'s tightness, size and affinity terms)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch


def margin_voxels(margin_mm: float, spacing: Sequence[float], name: str = "annotation_margin_mm"
                  ) -> tuple[float, ...]:
    """A box margin (the annotation margin, the background rim) in voxels per axis of a patch with ``spacing``
    (mm, the patch's axis order); ``name`` is the setting's, for the error."""
    if not math.isfinite(margin_mm) or margin_mm < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {margin_mm!r}")
    return tuple(margin_mm / s for s in spacing)


def dilation_voxels(distance_mm: float, spacing: Sequence[float]) -> tuple[int, ...]:
    """Neighbour spacing in whole voxels per axis (at least 1) for neighbours ``distance_mm`` apart."""
    if not math.isfinite(distance_mm) or distance_mm <= 0:
        raise ValueError(f"affinity_dilation_mm must be a finite number > 0, got {distance_mm!r}")
    return tuple(max(1, int(round(distance_mm / s))) for s in spacing)


#: ``tightness_planes``: plane bags across every axis of a box, or along the slice axis alone (slice ranges)
TIGHTNESS_PLANES = ("box", "slice")


def tightness_axes(planes: str, transpose_forward: Sequence[int], n_axes: int) -> tuple[int, ...] | None:
    """The patch axes whose planes are bags: ``None`` (every axis) for ``"box"``; for ``"slice"`` the patch axis
    that holds the image's slice axis (array axis 0 of the raw image, which nnU-Net's ``transpose_forward`` moves
    to patch axis ``transpose_forward.index(0)``).

    Raises:
        ValueError: for an unknown ``planes``, or ``"slice"`` in a configuration whose patches hold no slice axis
            (``2d``: each patch is one slice, a bag of its own).
    """
    if planes not in TIGHTNESS_PLANES:
        raise ValueError(f"tightness_planes must be one of {TIGHTNESS_PLANES}, got {planes!r}")
    if planes == "box":
        return None
    if n_axes != len(transpose_forward):
        raise ValueError(f"tightness_planes=slice needs 3D patches that hold the slice axis, but this configuration's "
                         f"patches have {n_axes} spatial axes; train a 3d configuration or set lambda_tightness=0")
    return (list(transpose_forward).index(0),)


def hu_from_normalised(data: torch.Tensor, scheme: str, properties: Mapping[str, float]) -> torch.Tensor:
    """Undo nnU-Net's ``CTNormalization`` of one channel: ``HU = x * std + mean`` (the clipping to nnU-Net's
    0.5 / 99.5 percentiles stays).

    Args:
        data: the normalised CT channel, any shape.
        scheme: the channel's normalisation scheme in the plans (``configuration_manager.normalization_schemes``).
        properties: the plans' ``foreground_intensity_properties_per_channel`` entry of the channel.

    Raises:
        ValueError: if the channel was not normalised as CT, so HU cannot be recovered.
    """
    if scheme != "CTNormalization":
        raise ValueError(f"the HU affinity term needs a CT channel normalised with CTNormalization, but the plans "
                         f"normalise channel 0 with {scheme}; set lambda_affinity=0 for this dataset")
    return data.float() * float(properties["std"]) + float(properties["mean"])


def barrier_sharpness(epoch: int, t0: float, growth: float, t_max: float) -> float:
    """The size barrier's ``t`` at ``epoch``: ``min(t0 * growth**epoch, t_max)`` (Kervadec et al.: ``t0 = 5``,
    ``growth = 1.1``)."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if epoch * math.log(growth) >= math.log(t_max / t0):  # also avoids overflowing growth ** epoch
        return float(t_max)
    return t0 * growth ** epoch


class BoxPriorSettings:
    """Settings of the box priors, mixed into a weak-box trainer (collected along the MRO like any trainer's
    settings, :mod:`nnunet_fracture.training.settings`).

    ``lambda_tightness``: plane bags (:class:`~nnunet_fracture.losses.BoxTightnessLoss`) across every axis of a
    box (``tightness_planes="box"``) or the slices of a slice range alone (``"slice"``), with
    ``annotation_margin_mm`` of box overhang left out, the outer ``box_rim_mm`` of every box trained as background
    (boxes drawn with at least that clearance) and, below 1, only the ``tightness_outside_top`` share of
    hardest outside voxels averaged, and with ``tightness_window`` > 1 each bag scoring the mean P of cubes of that
    many voxels (solid bags, no credit for a lattice); ``lambda_size``: the share of each box the fracture fills
    lies in ``[size_lower, size_upper]`` (:class:`~nnunet_fracture.losses.BoxSizeLoss`), with the barrier's ``t``
    growing from ``size_t0`` by ``size_t_growth`` per epoch up to ``size_t_max``; ``lambda_affinity``: neighbours
    ``affinity_dilation_mm`` apart whose HU differ little agree (:class:`~nnunet_fracture.losses.BoxAffinityLoss`;
    with ``affinity_border_pairs`` also across a box's border, the outside voxel as background);
    ``lambda_smoothness``: neighbouring voxels of one box get similar P, whatever their HU
    (:class:`~nnunet_fracture.losses.BoxSmoothnessLoss`, neighbours one voxel apart); ``lambda_projection``: the
    maximum-projection profile of each box's core along every axis is all ones by a Dice loss
    (:class:`~nnunet_fracture.losses.BoxProjectionLoss`, BoxInst's projection term; tightness's margin, window and
    planes).
    """

    settings = ("lambda_tightness", "annotation_margin_mm", "box_rim_mm", "tightness_beta", "tightness_gamma",
                "tightness_gamma_out", "tightness_outside_top", "tightness_window", "tightness_planes", "lambda_size",
                "size_lower", "size_upper", "size_t0", "size_t_growth", "size_t_max", "lambda_affinity", "affinity_theta_hu",
                "affinity_tau", "affinity_dilation_mm", "affinity_border_pairs", "lambda_smoothness",
                "lambda_projection")
    lambda_tightness = 0.0
    annotation_margin_mm = 6.0  # the phantom's boxes overhang the fracture by 1-4 voxels of 1.5 mm
    box_rim_mm = 0.0  # boxes overhang by at least this much: that rim of every box is background
    tightness_beta = 0.25  # Wang & Xia's focal weights
    tightness_gamma = 2.0
    tightness_gamma_out = 0.0  # see BoxTightnessLoss: focal outside voxels weighed too little in 3D
    tightness_outside_top = 1.0  # hard negatives: the share of outside voxels, hardest first, that are averaged
    tightness_window = 1  # plane bags score the mean P of cubes this wide (voxels): no credit for a lattice
    tightness_planes = "box"  # "slice": bags along the slice axis alone (slice ranges)
    lambda_size = 0.0
    size_lower = 0.02  # the phantom's fractures fill 3.5-19 % of their boxes
    size_upper = 0.3
    size_t0 = 5.0  # Kervadec et al.: 5, times 1.1 per epoch
    size_t_growth = 1.1
    size_t_max = 50.0
    lambda_affinity = 0.0
    affinity_theta_hu = 50.0  # about the phantom's noise (sigma 20-40 HU)
    affinity_tau = 0.3  # BoxInst
    affinity_dilation_mm = 1.5
    affinity_border_pairs = False  # pairs across a box border count, the outside voxel as background
    lambda_smoothness = 0.0  # Wang & Xia's pairwise term: lowers the in-box Dice on the quality bench (README)
    lambda_projection = 0.0  # BoxInst's projection term, on the tightness term's planes
    setting_ranges = {"lambda_tightness": (0.0, None), "annotation_margin_mm": (0.0, None), "box_rim_mm": (0.0, None),
                      "tightness_beta": (0.0, 1.0), "tightness_gamma": (0.0, None), "tightness_gamma_out": (0.0, None),
                      "tightness_outside_top": (1e-6, 1.0), "tightness_window": (1, None),
                      "lambda_size": (0.0, None), "size_lower": (0.0, 1.0), "size_upper": (0.0, 1.0),
                      "size_t0": (1e-6, None), "size_t_growth": (1.0, None), "size_t_max": (1e-6, None),
                      "lambda_affinity": (0.0, None), "affinity_theta_hu": (1e-6, None), "affinity_tau": (1e-6, 1.0),
                      "affinity_dilation_mm": (1e-6, None), "lambda_smoothness": (0.0, None),
                      "lambda_projection": (0.0, None)}
    setting_choices = {"tightness_planes": TIGHTNESS_PLANES}

    @property
    def uses_plane_bags(self) -> bool:
        """Whether a term on the plane bags (tightness, projection) is on: they need the slice axis and
        axis-aligned boxes."""
        return self.lambda_tightness > 0 or self.lambda_projection > 0

    def box_prior_loss_arguments(self, spacing: Sequence[float], transpose_forward: Sequence[int]) -> dict:
        """The :class:`~nnunet_fracture.losses.WeakBoxLoss` arguments of the box priors, for patches of ``spacing``
        of a dataset planned with ``transpose_forward`` (where the slice axis went)."""
        axes = (tightness_axes(self.tightness_planes, transpose_forward, len(spacing))
                if self.uses_plane_bags else None)
        return dict(tightness_axes=axes, lambda_tightness=self.lambda_tightness,
                    tightness_margin=margin_voxels(self.annotation_margin_mm, spacing),
                    tightness_rim=margin_voxels(self.box_rim_mm, spacing, "box_rim_mm"),
                    tightness_beta=self.tightness_beta, tightness_gamma=self.tightness_gamma,
                    tightness_gamma_out=self.tightness_gamma_out,
                    tightness_outside_top=self.tightness_outside_top, tightness_window=self.tightness_window,
                    lambda_size=self.lambda_size,
                    size_bounds=(self.size_lower, self.size_upper), size_t=self.size_t0,
                    lambda_affinity=self.lambda_affinity, affinity_theta=self.affinity_theta_hu,
                    affinity_tau=self.affinity_tau,
                    affinity_dilation=dilation_voxels(self.affinity_dilation_mm, spacing),
                    affinity_border_pairs=self.affinity_border_pairs, lambda_smoothness=self.lambda_smoothness,
                    lambda_projection=self.lambda_projection)

    def size_barrier_at(self, epoch: int) -> float:
        """The size barrier's ``t`` in ``epoch``.

        Raises:
            ValueError: if ``size_t_max < size_t0``.
        """
        if self.size_t_max < self.size_t0:
            raise ValueError(f"size_t_max ({self.size_t_max}) must be >= size_t0 ({self.size_t0})")
        return barrier_sharpness(epoch, self.size_t0, self.size_t_growth, self.size_t_max)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """nnU-Net's choice, with rotation off while the tightness term is on: the plane bags need axis-aligned
        boxes, and a rotated box's bounding core has planes that cut only a corner of it. Scaling augmentation
        (0.7-1.4, a fifth of the patches) stays; it changes the margin in voxels by up to 40 %."""
        rotation, dummy_2d, initial_patch_size, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if self.uses_plane_bags:
            rotation = (0.0, 0.0)
            self.print_to_log_file("rotation augmentation off: the plane bags (tightness, projection) need "
                                   "axis-aligned boxes")
        return rotation, dummy_2d, initial_patch_size, mirror_axes
