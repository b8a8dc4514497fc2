"""Classification head on the bottleneck of any plugin network ("Y-shaped" multi-task U-Net).

The head answers "does this patch (or this slice) contain fracture?"::

    logit = FC_2(Dropout(ReLU(FC_1(GAP(bottleneck)))))      GAP over all spatial axes, or over chosen ones

:class:`ClassificationHeadNetwork` wraps a network that follows the shared contract of
:mod:`nnunet_fracture.networks` (``skips = net.encoder(x)``, bottleneck last; ``net.decoder(skips)`` gives the
segmentation logits, a list highest resolution first while ``net.decoder.deep_supervision`` is on):

- training mode: returns the segmentation output unchanged; the class logits are kept in ``.class_logits``;
- eval mode: returns the *fused* logits of ``P_final = P_class x P_seg`` (see :func:`fuse_class_and_segmentation`)
  in the same structure (one tensor, or a list while deep supervision is on), so nnU-Net's online validation,
  ``nnUNetPredictor``, mirroring and fold ensembles work unchanged; ``.class_logits`` is set as well.

Fusion, with ``p = sigmoid(class logit)`` (broadcast over the voxels it covers):

- softmax outputs (label datasets, channel 0 = background): ``P_k = p * q_k`` for every foreground class
  ``k >= 1`` and ``P_0 = 1 - p * (1 - q_0)`` for the background, so the probabilities still sum to 1: the class
  head scales *all* foreground classes alike (it predicts "any fracture"), and the mass it removes goes to the
  background. The returned logits are ``log P`` (softmax of log-probabilities gives the probabilities back).
- sigmoid outputs (region datasets, weak boxes: one channel per region): ``P_r = p * sigmoid(s_r)`` for every
  region ``r``, returned as the logit ``log P_r - log(1 - P_r)``. Nested regions stay nested (each is scaled by
  the same ``p``).

Everything is computed in float32 in log space (``logsigmoid`` + ``log_softmax``; ``log(1 - P)`` by a stable
``log1mexp``), also under autocast, and clamped to ``[-LOGIT_BOUND, LOGIT_BOUND]``: nnU-Net's predictor
accumulates Gaussian-weighted logits in float16 and aborts on infinities, and the clamp changes no probability
by more than ``exp(-LOGIT_BOUND)``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

#: fused logits are clamped to [-LOGIT_BOUND, LOGIT_BOUND] (probabilities change by at most exp(-LOGIT_BOUND))
LOGIT_BOUND = 50.0
ACTIVATIONS = ("softmax", "sigmoid")

Output = Union[torch.Tensor, List[torch.Tensor]]


class ClassificationHead(nn.Module):
    """Global average pooling -> FC -> ReLU -> Dropout -> FC -> one logit.

    Args:
        in_channels: channels of the pooled feature map (the bottleneck).
        hidden_features: width of the hidden FC layer; default ``in_channels``.
        dropout: dropout probability before the logit layer, in ``[0, 1)``.
        pool_axes: spatial axes to average over (0 = the first spatial axis); ``None`` = all of them (one logit
            per patch). For one logit per slice of ``(b, C, S, h, w)`` features use ``(1, 2)``.

    Raises:
        ValueError: a non-positive channel count, a dropout outside ``[0, 1)`` or bad ``pool_axes``.
    """

    def __init__(self, in_channels: int, hidden_features: Optional[int] = None, dropout: float = 0.2,
                 pool_axes: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        hidden_features = in_channels if hidden_features is None else hidden_features
        for name, value in (("in_channels", in_channels), ("hidden_features", hidden_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if pool_axes is not None:
            pool_axes = tuple(pool_axes)
            if not pool_axes or any(isinstance(a, bool) or not isinstance(a, int) or a < 0 for a in pool_axes) \
                    or len(set(pool_axes)) != len(pool_axes):
                raise ValueError(f"pool_axes must be None or distinct non-negative spatial axes, got {pool_axes!r}")
        self.pool_axes = pool_axes
        self.fc = nn.Linear(in_channels, hidden_features)
        self.nonlin = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.logit = nn.Linear(hidden_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (b, C, *spatial) -> logits (b, 1, *spatial) with every pooled axis of size 1.

        Raises:
            ValueError: ``x`` has no spatial axis or fewer spatial axes than ``pool_axes`` names.
        """
        n_spatial = x.ndim - 2
        axes = tuple(range(n_spatial)) if self.pool_axes is None else self.pool_axes
        if n_spatial < 1 or max(axes) >= n_spatial:
            raise ValueError(f"features of shape {tuple(x.shape)} have {n_spatial} spatial axes; pool_axes "
                             f"{self.pool_axes} needs (b, C, *spatial) with more")
        pooled = x.mean(dim=tuple(a + 2 for a in axes), keepdim=True)  # (b, C, *1-or-kept)
        channels_last = pooled.movedim(1, -1)
        logit = self.logit(self.dropout(self.nonlin(self.fc(channels_last))))
        return logit.movedim(-1, 1)

    def extra_repr(self) -> str:
        return f"pool_axes={self.pool_axes}"


def resize_class_logits(class_logits: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Bring ``(b, 1, *k)`` class logits onto a grid of ``spatial_shape`` for broadcasting: axes of size 1 stay
    1; any other axis whose size differs is resampled by adaptive max pooling (a group of slices contains
    fracture when any of them does; the max of logits is the logit of the max probability).

    Raises:
        ValueError: the number of spatial axes differs.
    """
    spatial_shape = tuple(int(s) for s in spatial_shape)
    if class_logits.ndim - 2 != len(spatial_shape):
        raise ValueError(f"class logits of shape {tuple(class_logits.shape)} do not match segmentation logits "
                         f"with spatial shape {spatial_shape}: they need the same number of spatial axes")
    target = tuple(1 if k == 1 else s for k, s in zip(class_logits.shape[2:], spatial_shape))
    if target == tuple(class_logits.shape[2:]):
        return class_logits
    pool = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[len(target)]
    return pool(class_logits.float(), target).to(class_logits.dtype)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate everywhere (Maechler 2012); ``x = 0`` gives
    ``log(tiny)`` instead of ``-inf``."""
    x = x.clamp(max=-torch.finfo(x.dtype).tiny)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def fuse_class_and_segmentation(segmentation_logits: torch.Tensor, class_logits: torch.Tensor,
                                activation: str = "softmax") -> torch.Tensor:
    """Logits of ``P_final = sigmoid(class) x P_seg`` (the module docstring defines it per activation).

    Args:
        segmentation_logits: (b, K, *spatial); ``K >= 2`` for ``"softmax"`` (channel 0 = background).
        class_logits: (b, 1, *k), each ``k`` 1 or a spatial size (resized by :func:`resize_class_logits`).
        activation: ``"softmax"`` or ``"sigmoid"``, how nnU-Net turns these logits into probabilities.

    Returns:
        float32 logits of ``segmentation_logits``' shape, in ``[-LOGIT_BOUND, LOGIT_BOUND]``, whose softmax
        (sigmoid) is ``P_final``.

    Raises:
        ValueError: an unknown activation, softmax with one channel, or mismatching shapes.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if class_logits.ndim != segmentation_logits.ndim or class_logits.shape[0] != segmentation_logits.shape[0] \
            or class_logits.shape[1] != 1:
        raise ValueError(f"class logits {tuple(class_logits.shape)} must be (b, 1, ...) with the batch size and "
                         f"dimensionality of the segmentation logits {tuple(segmentation_logits.shape)}")
    if activation == "softmax" and segmentation_logits.shape[1] < 2:
        raise ValueError(f"softmax fusion needs a background and at least one foreground channel, got "
                         f"segmentation logits {tuple(segmentation_logits.shape)}; use activation='sigmoid'")
    with torch.autocast(segmentation_logits.device.type, enabled=False):
        seg = segmentation_logits.float()
        log_p_class = F.logsigmoid(resize_class_logits(class_logits.float(), seg.shape[2:]))
        if activation == "softmax":
            log_q = torch.log_softmax(seg, dim=1)
            log_foreground = log_p_class + log_q[:, 1:]  # log(p q_k), k >= 1
            log_any = log_p_class + torch.logsumexp(log_q[:, 1:], dim=1, keepdim=True)  # log(p (1 - q_0))
            fused = torch.cat([log1mexp(log_any), log_foreground], dim=1)
        else:
            log_p = log_p_class + F.logsigmoid(seg)
            fused = log_p - log1mexp(log_p)
        return fused.clamp(-LOGIT_BOUND, LOGIT_BOUND)


class ClassificationHeadNetwork(nn.Module):
    """A segmentation network plus a :class:`ClassificationHead` on its bottleneck (``skips[-1]``).

    ``.encoder`` and ``.decoder`` are the wrapped network's, so nnU-Net's ``set_deep_supervision_enabled``
    works unchanged; the wrapped network stays reachable as ``.net`` (e.g. for its attention maps). The fusion
    activation travels in the state dict (``_extra_state``): the trainer sets it from the dataset (``"sigmoid"``
    for region datasets) and the predictor, which builds the network without the dataset, gets it back with the
    weights.

    Args:
        net: a network with ``encoder`` (x -> list of skips, bottleneck last) and ``decoder`` (skips -> logits).
        bottleneck_channels: channels of ``skips[-1]``; default ``net.encoder.output_channels[-1]``.
        hidden_features: hidden width of the head (default ``bottleneck_channels``).
        dropout: head dropout probability (default 0.2).
        pool_axes: spatial axes the head averages over; ``None`` = one logit per patch.
        activation: ``"softmax"`` or ``"sigmoid"``; default ``"sigmoid"`` for one output channel, else softmax.
        num_classes: the number of output channels (to choose the default activation); default
            ``net.decoder.num_classes`` when it exists.

    Raises:
        ValueError: ``net`` lacks the contract's ``encoder``/``decoder``, or the channel count is unknown.
    """

    def __init__(self, net: nn.Module, bottleneck_channels: Optional[int] = None,
                 hidden_features: Optional[int] = None, dropout: float = 0.2,
                 pool_axes: Optional[Sequence[int]] = None, activation: Optional[str] = None,
                 num_classes: Optional[int] = None) -> None:
        super().__init__()
        if not isinstance(getattr(net, "encoder", None), nn.Module) or \
                not isinstance(getattr(net, "decoder", None), nn.Module):
            raise ValueError(f"{type(net).__name__} does not follow the network contract: it needs .encoder "
                             f"(x -> skips) and .decoder (skips -> logits) modules")
        if bottleneck_channels is None:
            channels = getattr(net.encoder, "output_channels", None)
            if not channels:
                raise ValueError(f"cannot tell the bottleneck channels of {type(net).__name__}: its encoder has "
                                 f"no output_channels; pass bottleneck_channels")
            bottleneck_channels = int(channels[-1])
        if num_classes is None:
            num_classes = getattr(net.decoder, "num_classes", None)
        if activation is None:
            activation = "sigmoid" if num_classes == 1 else "softmax"
        self.net = net
        self.head = ClassificationHead(bottleneck_channels, hidden_features, dropout, pool_axes)
        self._activation = "softmax"
        self.activation = activation
        self.class_logits: Optional[torch.Tensor] = None

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    @property
    def decoder(self) -> nn.Module:
        return self.net.decoder

    @property
    def activation(self) -> str:
        """How the fused logits turn into probabilities: ``"softmax"`` or ``"sigmoid"``."""
        return self._activation

    @activation.setter
    def activation(self, value: str) -> None:
        if value not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {value!r}")
        self._activation = value

    def get_extra_state(self) -> dict:
        return {"activation": self._activation}

    def set_extra_state(self, state: dict) -> None:
        self.activation = state["activation"]

    def forward(self, x: torch.Tensor) -> Output:
        skips = self.encoder(x)
        class_logits = self.head(skips[-1])
        self.class_logits = class_logits
        output = self.decoder(skips)
        if self.training:
            return output
        activation = self.activation
        if isinstance(output, (list, tuple)):
            return [fuse_class_and_segmentation(o, class_logits, activation) for o in output]
        return fuse_class_and_segmentation(output, class_logits, activation)
