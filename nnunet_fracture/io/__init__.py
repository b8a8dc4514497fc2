"""The low floor of reading and writing that higher floors share: output folders written as a whole, images and
arrays checked on disk after writing, checkpoints checked before loading, and nnU-Net's probability files."""
