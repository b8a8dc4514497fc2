"""The options that shape pseudo-masks beyond their rule: where a mask may lie (``inside_vertebra``), how a dark
lesion is drawn (``dark_lesions``), and which voxels a self-training round's labels leave to nnU-Net's ignore label
(the ``ignore_*`` options, :mod:`~nnunet_fracture.inference.round_labels`).

``pseudo-masks``, ``self-train``, the demo and the quality bench pass them as one checked :class:`LabelOptions`
value, so each is validated once, spelled alike everywhere and recorded alike in the provenance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnunet_fracture.inference.lesion_polarity import check_below_hu, check_grow_hu
from nnunet_fracture.inference.round_labels import check_dark_margin, check_faint_hu, check_unsure_share
from nnunet_fracture.inference.vertebra_interior import check_shell_mm


@dataclass(frozen=True)
class LabelOptions:
    """Checked pseudo-mask options (their command-line spelling in the errors).

    Attributes:
        ignore_band: ``(low, high)``: box voxels left out of the mask with ``low <= P < high`` are 'ignore'.
        ignore_ring: the masks' voxels within this many voxels of their border are 'ignore' too.
        ignore_unsure: this share of all boxes, those with the least confident masks, is 'ignore' whole.
        ignore_faint: boxes whose mask differs from the rest of the box by less than this many HU are 'ignore'.
        inside_vertebra: masks keep only voxels this many mm inside the vertebra each box names (``None``: off).
        dark_lesions: with ``inside_vertebra``: a box whose P prefers the darker part of its bone gets the bone
            more than this many HU below its median as its mask (0: off).
        dark_grow: with ``dark_lesions``: each dark mask grows through its bone more than this many HU below the
            median (0: the core only).
        ignore_dark_margin: with ``dark_lesions``: the voxels within this many voxels around a dark lesion's mask,
            in its box, are 'ignore'.

    Raises:
        ValueError: an option out of range, or one set without the option it needs.
    """

    ignore_band: Optional[tuple[float, float]] = None
    ignore_ring: int = 0
    ignore_unsure: float = 0.0
    ignore_faint: float = 0.0
    inside_vertebra: Optional[float] = None
    dark_lesions: float = 0.0
    ignore_dark_margin: int = 0
    dark_grow: float = 0.0

    def __post_init__(self) -> None:
        if self.ignore_band is not None:
            low, high = (float(v) for v in self.ignore_band)
            if not 0 <= low < high <= 1:
                raise ValueError(f"--ignore-band must be two probabilities LOW < HIGH in [0, 1], got {low} {high}")
            object.__setattr__(self, "ignore_band", (low, high))
        ring = self.ignore_ring
        if isinstance(ring, bool) or not isinstance(ring, int) or ring < 0:
            raise ValueError(f"--ignore-ring must be a whole number of voxels >= 0, got {ring!r}")
        object.__setattr__(self, "ignore_unsure", check_unsure_share(self.ignore_unsure))
        object.__setattr__(self, "ignore_faint", check_faint_hu(self.ignore_faint))
        if self.inside_vertebra is not None:
            object.__setattr__(self, "inside_vertebra", check_shell_mm(self.inside_vertebra))
        object.__setattr__(self, "dark_lesions", check_below_hu(self.dark_lesions))
        object.__setattr__(self, "ignore_dark_margin", check_dark_margin(self.ignore_dark_margin))
        object.__setattr__(self, "dark_grow", check_grow_hu(self.dark_grow, self.dark_lesions))
        if self.dark_lesions and self.inside_vertebra is None:
            raise ValueError("--dark-lesions compares each box's bone only, which the vertebra maps delimit (outside "
                             "them a box holds disc and soft tissue, darker than bone). Fix: add --inside-vertebra "
                             "SHELL_MM (e.g. 1.5), or leave --dark-lesions out.")
        if self.ignore_dark_margin and not self.dark_lesions:
            raise ValueError("--ignore-dark-margin widens the masks of dark lesions, which --dark-lesions finds. Fix: "
                             "add --dark-lesions HU (e.g. 100), or leave --ignore-dark-margin out.")

    @property
    def ignores(self) -> bool:
        """Whether any voxel can become 'ignore' (the exported labels then carry the ignore label)."""
        return any(used for _, used in self._ignore_options())

    def check_export(self, exporting: bool) -> None:
        """The ignore options only shape exported labels.

        Raises:
            ValueError: one is set but nothing is exported.
        """
        for option, used in self._ignore_options():
            if used and not exporting:
                raise ValueError(f"{option} only shapes the exported labels. Fix: add --export-dataset ID --name NAME "
                                 f"or leave {option} out.")

    def recorded(self) -> dict:
        """What ``self_training.json`` records: ``ignore_band`` always, every other option only when set (so records
        written before an option existed still match a resumed run that leaves it out)."""
        optional = {"ignore_ring": self.ignore_ring, "ignore_unsure": self.ignore_unsure,
                    "inside_vertebra": self.inside_vertebra, "ignore_faint": self.ignore_faint,
                    "dark_lesions": self.dark_lesions, "ignore_dark_margin": self.ignore_dark_margin,
                    "dark_grow": self.dark_grow}
        return {"ignore_band": list(self.ignore_band) if self.ignore_band else None,
                **{k: v for k, v in optional.items() if v is not None and (v or k == "inside_vertebra")}}

    def _ignore_options(self) -> tuple[tuple[str, bool], ...]:
        return (("--ignore-band", self.ignore_band is not None), ("--ignore-ring", self.ignore_ring > 0),
                ("--ignore-unsure-boxes", self.ignore_unsure > 0), ("--ignore-faint-boxes", self.ignore_faint > 0),
                ("--ignore-dark-margin", self.ignore_dark_margin > 0))
