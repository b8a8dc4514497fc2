"""Tri-planar 2D models: reoriented copies of a raw dataset so that nnU-Net's 2d configuration trains coronal or
sagittal slices (:mod:`.reoriented_copies`, ``nnunet-fracture reorient``), the exact mapping of a copy's
predictions back to the source grid (:mod:`.grid_mapping`), and the fusion of the planes' probabilities, with an
optional classification-head factor (:mod:`.plane_fusion`, :mod:`.class_head_fusion`, ``nnunet-fracture fuse``)."""
