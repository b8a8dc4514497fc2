"""Plans manipulation (nnU-Net planners are not pluggable, so plans files are written directly)."""
