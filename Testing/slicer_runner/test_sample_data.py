"""The synthetic chest CT the module registers with Sample Data: made by the core, once, with its tumour."""

import numpy as np
import SimpleITK as sitk

from VQSegLib import sample_data


def test_the_sample_is_a_chest_ct_in_hu_with_a_tumour_and_is_made_once(tmp_path):
    path = sample_data.writeSyntheticChestCt(str(tmp_path))
    image = sitk.ReadImage(path)
    assert image.GetSize() == (256, 256, 40) and image.GetSpacing() == (1.0, 1.0, 2.5)
    array = sitk.GetArrayViewFromImage(image)
    assert array.min() <= -900 and array.max() >= 200  # air and bone, in HU
    assert np.mean(array < -500) > 0.2  # lungs and the air around the body
    before = (tmp_path / sample_data.FILE_NAME).stat().st_mtime_ns
    assert sample_data.writeSyntheticChestCt(str(tmp_path)) == path
    assert (tmp_path / sample_data.FILE_NAME).stat().st_mtime_ns == before
