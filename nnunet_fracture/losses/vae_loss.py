"""The VAE objective: reconstruction loss plus beta times the KL divergence of the latent code from N(0, I)."""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional

import torch
from torch import nn
from torch.nn.modules.loss import _Loss

RECONSTRUCTIONS = ("mse", "l1")
REDUCTIONS = ("mean", "sum", "none")


def _check_beta(beta: object) -> float:
    if isinstance(beta, bool) or not isinstance(beta, Real) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    return float(beta)


def warmed_up_beta(beta: float, epoch: int, warmup_epochs: int) -> float:
    """Linear KL warm-up (Bowman et al. 2016; Sonderby et al. 2016): ``beta * min(1, (epoch + 1) / warmup_epochs)``,
    so epoch 0 already has a small positive weight; ``warmup_epochs = 0`` means no warm-up.

    Raises:
        ValueError: ``beta < 0``, ``epoch < 0`` or ``warmup_epochs < 0``.
    """
    beta = _check_beta(beta)
    if epoch < 0 or warmup_epochs < 0:
        raise ValueError(f"epoch and warmup_epochs must be >= 0, got epoch={epoch!r}, warmup_epochs={warmup_epochs!r}")
    if warmup_epochs == 0:
        return beta
    return beta * min(1.0, (epoch + 1) / warmup_epochs)


class VAELoss(_Loss):
    """Negative evidence lower bound of a VAE with a beta-weighted KL term, per input element.

    For one sample with ``N`` input elements (channels x voxels), reconstruction ``x_hat`` and a diagonal
    Gaussian posterior ``N(mu, diag(exp(logvar)))`` over ``D`` latent dimensions::

        recon = (1 / N) sum_i (x_i - x_hat_i)^2            ("mse";  "l1": |x_i - x_hat_i|)
        KL    = -1/2 sum_d (1 + logvar_d - mu_d^2 - exp(logvar_d))
        L     = recon + beta * KL / N

    Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (the KL term in closed form, Appendix B);
    beta > 1 favours a more regular latent space and beta < 1 sharper reconstructions (Higgins et al.,
    "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework", ICLR 2017). Dividing the
    KL by ``N`` puts both terms on the per-element scale, so that ``beta = 1`` with ``"mse"`` is the negative
    ELBO (up to constants) of a Gaussian decoder with variance 1/2, whatever the patch size. ``beta`` is an
    attribute; trainers change it between steps for a warm-up (:func:`warmed_up_beta`).

    After each ``forward``, ``last_components`` holds detached floats ``reconstruction``, ``kl`` (per sample,
    not divided by ``N``), ``beta`` and ``total`` (batch means). Computed in float32.

    Args:
        beta: weight of the KL term, >= 0.
        reconstruction: ``"mse"`` or ``"l1"``.
        reduction: over the batch, ``"mean"`` (default), ``"sum"`` or ``"none"`` (one value per sample).

    Raises:
        ValueError: ``beta`` negative or not finite, an unknown ``reconstruction`` or ``reduction``.
    """

    def __init__(self, beta: float = 1.0, reconstruction: str = "mse", reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        super().__init__(reduction=reduction)
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {', '.join(RECONSTRUCTIONS)}, got {reconstruction!r}")
        self.beta = _check_beta(beta)
        self.reconstruction = reconstruction
        self.last_components: dict[str, float] = {}

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor, mu: torch.Tensor,
                logvar: torch.Tensor) -> torch.Tensor:
        """
        Args:
            reconstruction: ``(B, C, *spatial)`` decoder output.
            target: ``(B, C, *spatial)`` the input that was encoded.
            mu: ``(B, D)`` posterior means.
            logvar: ``(B, D)`` posterior log-variances.

        Returns:
            float32 scalar (``"mean"``/``"sum"``) or ``(B,)`` (``"none"``).

        Raises:
            ValueError: ``reconstruction`` and ``target`` differ in shape, ``mu`` and ``logvar`` differ in shape,
                or their batch sizes differ.
        """
        if tuple(reconstruction.shape) != tuple(target.shape):
            raise ValueError(f"reconstruction shape {tuple(reconstruction.shape)} differs from target shape "
                             f"{tuple(target.shape)}")
        if tuple(mu.shape) != tuple(logvar.shape) or mu.ndim != 2:
            raise ValueError(f"mu shape {tuple(mu.shape)} and logvar shape {tuple(logvar.shape)} must be the same "
                             f"(B, latent_dim)")
        if mu.shape[0] != target.shape[0]:
            raise ValueError(f"mu has batch size {mu.shape[0]} but target shape {tuple(target.shape)} has "
                             f"{target.shape[0]}")
        diff = reconstruction.float() - target.float()
        per_element = diff.square() if self.reconstruction == "mse" else diff.abs()
        recon = per_element.flatten(1).mean(dim=1)
        mu, logvar = mu.float(), logvar.float()
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1)
        n_elements = target[0].numel()
        per_sample = recon + self.beta * kl / n_elements
        self.last_components = {"reconstruction": recon.detach().mean().item(), "kl": kl.detach().mean().item(),
                                "beta": self.beta, "total": per_sample.detach().mean().item()}
        if self.reduction == "mean":
            return per_sample.mean()
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample

    def extra_repr(self) -> str:
        return f"beta={self.beta}, reconstruction={self.reconstruction!r}, reduction={self.reduction!r}"


class VAEStepLoss(nn.Module):
    """:class:`VAELoss` in the shape of nnU-Net's ``loss(output, target)`` call, so that nnU-Net's own ``train_step``
    (autocast, gradient scaler, clipping) trains the VAE.

    ``output`` is the network's :class:`~nnunet_fracture.networks.vae.VAEOutput`; ``target`` (the batch's labels,
    all background on normal-tissue patches) is not used; the encoded input comes as the keyword ``data`` (the
    trainer passes it while a step runs). ``beta`` and ``last_components`` are the wrapped loss's.
    """

    def __init__(self, vae_loss: VAELoss) -> None:
        super().__init__()
        if not isinstance(vae_loss, VAELoss):
            raise TypeError(f"VAEStepLoss wraps a VAELoss, got {type(vae_loss).__name__}")
        self.vae_loss = vae_loss

    @property
    def beta(self) -> float:
        return self.vae_loss.beta

    @beta.setter
    def beta(self, value: float) -> None:
        self.vae_loss.beta = value

    @property
    def last_components(self) -> dict:
        return self.vae_loss.last_components

    def forward(self, output, target: object = None, data: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Raises:
            ValueError: without ``data``, or if ``output`` is not a VAE's training output.
        """
        if data is None:
            raise ValueError("VAEStepLoss needs the encoded input as data=...; the VAE trainer passes it during a "
                             "training or validation step")
        if not all(hasattr(output, k) for k in ("reconstruction", "mu", "logvar")):
            raise ValueError(f"VAEStepLoss needs the VAE's training output (reconstruction, mu, logvar), got "
                             f"{type(output).__name__}")
        return self.vae_loss(output.reconstruction, data, output.mu, output.logvar)
