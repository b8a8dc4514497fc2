"""io.reference_grid: one helper puts an array on a reference image's grid."""


def test_array_on_a_reference_grid_keeps_its_geometry_and_refuses_another_shape():
    import numpy as np
    import pytest
    import SimpleITK as sitk

    from nnunet_fracture.io.reference_grid import array_to_image

    reference = sitk.Image([4, 3, 2], sitk.sitkInt16)
    reference.SetSpacing((0.5, 0.75, 2.0))
    reference.SetOrigin((1.0, -2.0, 3.0))
    reference.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    image = array_to_image(np.ones((2, 3, 4), np.float32), reference)
    assert image.GetSize() == (4, 3, 2) and image.GetSpacing() == (0.5, 0.75, 2.0)
    assert image.GetOrigin() == (1.0, -2.0, 3.0) and image.GetDirection() == (0, 1, 0, 1, 0, 0, 0, 0, 1)
    with pytest.raises(ValueError, match=r"shape \(4, 3, 2\) does not fit the reference grid of shape \(2, 3, 4\)"):
        array_to_image(np.ones((4, 3, 2)), reference)
