"""What the verbs that load nnU-Net checkpoints (``attention-maps``, ``vae-error``) say and accept about trusting
them: nnU-Net reads checkpoints with pickle, so these verbs check them first (:mod:`nnunet_fracture.io.checkpoints`)
unless ``--trust-checkpoints`` is given."""
from __future__ import annotations

import argparse

TRUST_HELP = """\
Trust: nnU-Net reads checkpoints with pickle, so a crafted model folder can run code. This verb first reads each
checkpoint with torch.load(weights_only=True) and an allow-list of what nnU-Net checkpoints hold (tensors, plain
containers, numpy values) and refuses one that needs more; --trust-checkpoints skips that check. nnU-Net also
reads the folder's plans.json and dataset.json. Only point it at model folders you trust, as with nnUNetv2_predict.
"""


def add_trust_argument(p: argparse.ArgumentParser, what: str) -> None:
    """``--trust-checkpoints``: load ``what`` (e.g. "the checkpoint") with pickle without the allow-list check."""
    p.add_argument("--trust-checkpoints", action="store_true",
                   help=f"skip the allow-list check and load {what} with pickle (only for model folders you trust; "
                        "see Trust above)")
