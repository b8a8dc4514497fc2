"""Adversarial segmentation loss: a conditional discriminator judges (CT, segmentation) pairs, as in pix2pix.

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks" (pix2pix, CVPR 2017), eq. 1-4:
the generator G is trained on ``L_task + lambda L_cGAN``, with ``L_cGAN = E[log D(x, y)] + E[log(1 - D(x, G(x)))]``;
G minimises the non-saturating form ``-log D(x, G(x))`` and D maximises ``L_cGAN`` (pix2pix halves D's loss).
Luc et al., "Semantic Segmentation using Adversarial Networks" (NIPS Workshop on Adversarial Training, 2016) did
this for segmentation: G's class probabilities are the fake sample, the one-hot ground truth the real one, and D
sees the image too. Here G is nnU-Net's network and ``L_task`` nnU-Net's own loss (Dice + CE with deep
supervision); the adversarial term uses the full-resolution output only.

Voxels carrying nnU-Net's ignore label have no truth: they are zeroed in every segmentation channel of both the
real and the fake pair, so D cannot tell the two apart there.

:class:`GANLoss` scores discriminator logits against "real" or "fake" (``"vanilla"``: binary cross entropy on the
logits, pix2pix's default; ``"lsgan"``: least squares, Mao et al., ICCV 2017). :class:`AdversarialSegmentationLoss`
wraps the task loss: while gradients are on and it is given the batch's ``image``, it adds
``weight x GANLoss(D(image, P), real)`` with D's parameters frozen and keeps the detached pair for
:meth:`AdversarialSegmentationLoss.discriminator_loss`, which the trainer minimises with D's own optimiser.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.loss import _Loss

GAN_MODES = ("vanilla", "lsgan")


class GANLoss(_Loss):
    """Mean loss of discriminator ``logits`` against the label real (1) or fake (0).

    Args:
        mode: ``"vanilla"`` (``BCEWithLogits``, pix2pix) or ``"lsgan"`` (``(logits - label)^2``, LSGAN).

    Raises:
        ValueError: on an unknown ``mode``.
    """

    def __init__(self, mode: str = "vanilla") -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN mode {mode!r}; expected one of {', '.join(GAN_MODES)}")
        self.mode = mode

    def forward(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        """float32 scalar: the mean over every patch logit."""
        logits = logits.float()
        label = torch.full_like(logits, 1.0 if real else 0.0)
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, label)
        return F.mse_loss(logits, label)


def segmentation_pair(image: torch.Tensor, segmentation: torch.Tensor,
                      known: Optional[torch.Tensor] = None) -> torch.Tensor:
    """D's input: ``image`` ``(B, I, *spatial)`` stacked with ``segmentation`` ``(B, C, *spatial)`` (times ``known``,
    ``(B, 1, *spatial)``, 0 where the voxel has no truth).

    Raises:
        ValueError: quoting the shapes when batch or spatial sizes differ.
    """
    if image.shape[0] != segmentation.shape[0] or image.shape[2:] != segmentation.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} and segmentation {tuple(segmentation.shape)} must share batch "
                         "and spatial sizes")
    if known is not None:
        if known.shape != (segmentation.shape[0], 1, *segmentation.shape[2:]):
            raise ValueError(f"known {tuple(known.shape)} must be (B, 1, *spatial) of segmentation "
                             f"{tuple(segmentation.shape)}")
        segmentation = segmentation * known
    return torch.cat([image.to(segmentation.dtype), segmentation], dim=1)


def one_hot_with_ignore(target: torch.Tensor, num_classes: int,
                        ignore_label: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(one_hot, known)`` of a label map ``(B, 1, *spatial)``: float one-hot ``(B, num_classes, *spatial)`` and
    ``known`` ``(B, 1, *spatial)``, 0 on voxels labelled ``ignore_label`` (their one-hot row is all 0).

    Raises:
        ValueError: for a target that is not ``(B, 1, *spatial)`` or holds a label outside the classes.
    """
    if target.ndim < 3 or target.shape[1] != 1:
        raise ValueError(f"target must be a label map (B, 1, *spatial), got {tuple(target.shape)}")
    labels = target[:, 0].long()
    known = torch.ones_like(labels, dtype=torch.bool) if ignore_label is None else labels != ignore_label
    labels = torch.where(known, labels, torch.zeros_like(labels))
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"target holds labels outside 0..{num_classes - 1} (ignore label: {ignore_label})")
    one_hot = F.one_hot(labels, num_classes).movedim(-1, 1).float() * known.unsqueeze(1)
    return one_hot, known.unsqueeze(1).float()


def delayed_weight(weight: float, epoch: int, num_epochs: int, start: float) -> float:
    """The adversarial weight of ``epoch``: 0 before epoch ``ceil(start x num_epochs)``, ``weight`` from it on.

    An untrained segmenter's softmax is told from the one-hot truth at once; a discriminator that wins from the
    first step pushes the segmenter towards confident background everywhere, which on mostly empty patches looks
    like the truth (the quality bench's undelayed run predicted nothing in any of its 120 epochs). Luc et al. (2016)
    start their PASCAL VOC runs from a trained segmentation network; ``start`` is that pre-training, as a share of
    the schedule.

    Raises:
        ValueError: for ``weight < 0``, ``epoch < 0``, ``num_epochs < 1`` or ``start`` outside [0, 1].
    """
    if weight < 0 or epoch < 0 or num_epochs < 1 or not 0 <= start <= 1:
        raise ValueError(f"need weight >= 0, epoch >= 0, num_epochs >= 1 and 0 <= start <= 1; got weight={weight!r}, "
                         f"epoch={epoch!r}, num_epochs={num_epochs!r}, start={start!r}")
    return float(weight) if epoch >= math.ceil(start * num_epochs) else 0.0


class AdversarialSegmentationLoss(nn.Module):
    """``task_loss(output, target) + weight x GANLoss(D(image, softmax(output)), real)`` (module docstring).

    Args:
        task_loss: nnU-Net's loss (or any ``loss(output, target)``), deep-supervised or not.
        discriminator: D, taking ``image channels + classes`` channels.
        weight: lambda of the adversarial term, >= 0 (0: the task loss alone); a trainer may change ``.weight``
            between epochs (:func:`delayed_weight`).
        ignore_label: nnU-Net's ignore label, or ``None``.
        mode: :data:`GAN_MODES`.

    Raises:
        ValueError: for a negative or non-finite ``weight`` or an unknown ``mode``.
    """

    def __init__(self, task_loss: nn.Module, discriminator: nn.Module, weight: float,
                 ignore_label: Optional[int] = None, mode: str = "vanilla") -> None:
        super().__init__()
        if isinstance(weight, bool) or not isinstance(weight, Real) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        self.task_loss = task_loss
        self.discriminator = discriminator
        self.weight = float(weight)
        self.ignore_label = ignore_label
        self.gan = GANLoss(mode)
        self.pending: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    def forward(self, output, target, image: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The loss of one step.

        Args:
            output: logits ``(B, C, *spatial)`` or nnU-Net's deep-supervision list (full resolution first).
            target: label map ``(B, 1, *spatial)`` or the list matching ``output``.
            image: the batch's input ``(B, I, *spatial)``; without it (or without gradients: validation) only the
                task loss.
        """
        task = self.task_loss(output, target)
        self.pending = None
        if image is None or self.weight == 0 or not torch.is_grad_enabled():
            return task
        logits = output[0] if isinstance(output, (list, tuple)) else output
        labels = target[0] if isinstance(target, (list, tuple)) else target
        probabilities = torch.softmax(logits.float(), dim=1)
        real, known = one_hot_with_ignore(labels, probabilities.shape[1], self.ignore_label)
        image = image.to(probabilities.device, non_blocking=True)
        frozen = [p for p in self.discriminator.parameters() if p.requires_grad]
        for p in frozen:  # G's step must not leave gradients in D (pix2pix's set_requires_grad(netD, False))
            p.requires_grad_(False)
        try:
            fooled = self.gan(self.discriminator(segmentation_pair(image, probabilities, known)), real=True)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        self.pending = (image.detach(), real, (probabilities * known).detach())  # real: masked, no graph
        return task + self.weight * fooled

    def discriminator_loss(self) -> Optional[torch.Tensor]:
        """D's loss on the last training step's pair, ``0.5 (GAN(D(x, y), real) + GAN(D(x, P), fake))``; ``None``
        when the last call added no adversarial term. Consumes the pair."""
        if self.pending is None:
            return None
        image, real, fake = self.pending
        self.pending = None
        return 0.5 * (self.gan(self.discriminator(segmentation_pair(image, real)), real=True)
                      + self.gan(self.discriminator(segmentation_pair(image, fake)), real=False))
