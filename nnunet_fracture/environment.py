"""nnU-Net's environment variables, read lazily and explained when missing.

nnU-Net reads ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` from the environment and finds
plugin trainers through ``nnUNet_extTrainer``. Every plugin command that needs one of them calls the helpers
here, so a missing variable produces one message that says exactly what to export.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from nnunet_fracture.trainer_discovery import trainer_path

_EXPLANATIONS = {
    "nnUNet_raw": "the folder holding raw datasets (DatasetXXX_Name/imagesTr, labelsTr, dataset.json)",
    "nnUNet_preprocessed": "the folder nnUNetv2_plan_and_preprocess writes to",
    "nnUNet_results": "the folder nnUNetv2_train writes trained models to",
}


class EnvironmentNotConfigured(RuntimeError):
    """Raised when an nnU-Net environment variable the command needs is not set."""


def nnunet_folder(name: str) -> Path:
    """Return the folder named by the nnU-Net environment variable ``name`` or raise a helpful error."""
    if name not in _EXPLANATIONS:
        raise ValueError(f"unknown nnU-Net folder variable {name!r}; expected one of {sorted(_EXPLANATIONS)}")
    value = os.environ.get(name)
    if not value:
        raise EnvironmentNotConfigured(
            f"{name} is not set. It must name {_EXPLANATIONS[name]}. Fix: export {name}=/path/to/{name}"
        )
    return Path(value)


def ext_trainer_problem() -> str | None:
    """Return a message if ``nnUNet_extTrainer`` does not list the plugin's trainer folder, else ``None``."""
    folder = str(trainer_path())
    listed = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if any(os.path.abspath(p) == folder for p in listed):
        return None
    what = "is not set" if not listed else f"does not list the plugin's trainer folder (it is {os.pathsep.join(listed)!r})"
    return (
        f"nnUNet_extTrainer {what}, so nnUNetv2_train / nnUNetv2_predict cannot find the nnunet_fracture "
        f"trainers. Fix: export nnUNet_extTrainer=$(nnunet-fracture trainer-path)   # = {folder}"
    )


@contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the ``with`` block only, then restore what was there (or unset).

    For in-process steps that read nnU-Net's folders from the environment (planning helpers, nnU-Net's own
    functions); subprocesses should get an ``env`` mapping instead.
    """
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update({name: str(value) for name, value in values.items()})
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
