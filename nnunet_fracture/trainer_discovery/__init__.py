"""The folder that ``nnUNet_extTrainer`` points at.

nnU-Net imports every module of each folder listed in ``nnUNet_extTrainer`` with that folder temporarily on
``sys.path``, then removes those modules from ``sys.modules``. Pointing it at ``nnunet_fracture/trainers``
would import the trainer modules as top-level modules (breaking their relative imports); pointing it at the
folder above the package would purge ``nnunet_fracture`` itself. This folder instead holds a single, uniquely
named shim module that re-exports the plugin's trainers from the properly imported package.
"""
from pathlib import Path


def trainer_path() -> Path:
    """Absolute path of the folder to export as ``nnUNet_extTrainer``."""
    return Path(__file__).resolve().parent
