"""``nnunet-fracture visualize``: heat-map views, projections, 3D renderings and Slicer meshes of predictions,
pictures of augmented training batches, and an HTML report tying a run's figures and metrics together."""
