"""The low floor of reading and writing that higher floors share (output folders today)."""
