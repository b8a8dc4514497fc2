"""io.image_files: one list of image endings, the longest ending wins."""
from nnunet_fracture.io.image_files import IMAGE_ENDINGS, image_ending, image_stem


def test_endings_and_stems_by_hand():
    assert IMAGE_ENDINGS[0] == ".nii.gz"
    assert image_ending("case1_0000.nii.gz") == ".nii.gz" and image_stem("case1_0000.nii.gz") == "case1_0000"
    assert image_ending("a.nii") == ".nii" and image_stem("b.mha") == "b" and image_stem("c.nrrd") == "c"
    assert image_ending("notes.txt") is None and image_stem("x.npz") is None
    assert image_ending(".nii.gz") is None  # an ending alone is no image file

