"""Shim imported by nnU-Net's trainer look-up; it only re-exports the plugin's trainer classes."""
from nnunet_fracture.trainers import *  # noqa: F401,F403  (nnU-Net looks classes up by name in this module)
