"""The first weak-box recipe's side of a weak-box trainer: the settings of its terms L1-L4
(:class:`BoxMILSettings`, a mixin) and the log line that says whether L4 runs.

- L1 ``lambda_outside``: voxels outside every box are background;
- L2 ``lambda_mil``: each box (one bag per box and patch) holds fracture, its P aggregated by ``bag_aggregation``
  (``smooth_max`` with ``smooth_max_alpha``);
- L3 ``lambda_contrast``: the best inside voxel beats the best outside voxel by ``contrast_margin``
  (``contrast_mode``);
- L4 ``lambda_consistency``: P agrees with the VAE error map E of a dataset written by ``nnunet-fracture vae-error``
  (mean |P - E|, E read from the input channel named ``noNorm`` and clipped to [0, 1]).

The terms are :class:`~nnunet_fracture.losses.WeakBoxLoss`'s; README "Weak-box losses" gives their formulas.
"""
from __future__ import annotations

from typing import Optional

from nnunet_fracture.losses import AGGREGATIONS
from nnunet_fracture.losses.box_contrast import CONTRAST_MODES


class BoxMILSettings:
    """Settings of L1-L4, mixed into a weak-box trainer (collected along the MRO like any trainer's settings,
    :mod:`nnunet_fracture.training.settings`). All terms are off here; a trainer switches on its recipe."""

    settings = ("lambda_outside", "lambda_mil", "lambda_contrast", "lambda_consistency", "bag_aggregation",
                "smooth_max_alpha", "contrast_margin", "contrast_mode")
    lambda_outside = 0.0
    lambda_mil = 0.0
    lambda_contrast = 0.0
    lambda_consistency = 0.0
    bag_aggregation = "mean"
    smooth_max_alpha = 4.0
    contrast_margin = 0.3
    contrast_mode = "max"
    setting_choices = {"bag_aggregation": AGGREGATIONS, "contrast_mode": CONTRAST_MODES}
    setting_ranges = {"lambda_outside": (0.0, None), "lambda_mil": (0.0, None), "lambda_contrast": (0.0, None),
                      "lambda_consistency": (0.0, None), "smooth_max_alpha": (1e-6, None)}

    def box_mil_loss_arguments(self) -> dict:
        """The :class:`~nnunet_fracture.losses.WeakBoxLoss` arguments of L1-L4."""
        return dict(lambda_outside=self.lambda_outside, lambda_mil=self.lambda_mil,
                    lambda_contrast=self.lambda_contrast, lambda_consistency=self.lambda_consistency,
                    aggregation=self.bag_aggregation, alpha=self.smooth_max_alpha, margin=self.contrast_margin,
                    contrast_mode=self.contrast_mode)

    def consistency_note(self, error_channel: Optional[int], loss_without_error_map: Optional[str] = None
                         ) -> Optional[str]:
        """The log line on L4, or ``None`` when L4 is off.

        Args:
            error_channel: the dataset's VAE error channel (``None``: it has none).
            loss_without_error_map: the name of the trainer's loss when that loss takes no error map.
        """
        if self.lambda_consistency <= 0:
            return None
        if error_channel is not None and loss_without_error_map is None:
            return (f"L4 (lambda_consistency={self.lambda_consistency}) reads the VAE error map E from input channel "
                    f"{error_channel}")
        why = (f"the loss {loss_without_error_map} takes no error map" if error_channel is not None else
               "the dataset has no VAE error channel (a channel named noNorm, written by `nnunet-fracture vae-error`)")
        return f"L4 skipped: lambda_consistency={self.lambda_consistency} but {why}"
