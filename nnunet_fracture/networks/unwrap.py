"""The plain network inside the wrappers nnU-Net may put around it during training."""
from __future__ import annotations

from torch import nn


def unwrap_network(network: nn.Module) -> nn.Module:
    """The plain module inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(network, nn.parallel.DistributedDataParallel):
            network = network.module
        elif hasattr(network, "_orig_mod") and isinstance(network._orig_mod, nn.Module):
            network = network._orig_mod
        else:
            return network
