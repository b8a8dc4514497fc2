"""Write a stream of CaseRecords as one nnU-Net raw dataset (SPEC - to be implemented).

write_raw_dataset(cases, dataset_id, name, weak="box", crop_vertebrae=False, context=1, overwrite=False,
                  source_format="generic", raw_root=None) -> Path

Layout written under raw_root (default: $nnUNet_raw via nnunet_fracture.environment.nnunet_folder):
  DatasetXXX_NAME/
    imagesTr/{case}_0000.nii.gz     CT (HU), pixel type preserved (int16 typical)
    labelsTr/{case}.nii.gz          uint8: box mode 1 inside any box; slice mode 1 on every voxel of the
                                    axial slices k in [lo_k, hi_k] of each box; mask mode the GT mask (>0 -> 1)
    instancesTr/{case}.nii.gz       uint16 box id (1..K in boxes.json order; later box wins on overlap), box/slice
    groundTruthTr/{case}.nii.gz     uint8 GT fracture masks, only for cases that have one (evaluation only)
    vertebraeTr/{case}.nii.gz       vertebra label maps, where present
    boxes.json                      {case: [{box_id, lo, hi, world_min, world_max, label, grade}]}
    dataset.json                    channel_names {"0": "CT"}, labels {background: 0, fracture: 1},
                                    numTraining, file_ending ".nii.gz", plus "nnunet_fracture": {...provenance}
"""
