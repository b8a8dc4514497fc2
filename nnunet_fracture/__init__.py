"""nnunet_fracture: an nnU-Net v2 plugin for vertebral fracture segmentation from box annotations."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("nnunet-fracture")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
