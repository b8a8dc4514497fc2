"""Helpers for the plugin trainers that are not trainers themselves (nnU-Net imports every module in trainers/)."""
