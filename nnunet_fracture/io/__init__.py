"""The low floor of reading and writing that higher floors share: output folders written as a whole, and images and
arrays checked on disk after writing."""
