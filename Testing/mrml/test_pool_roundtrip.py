"""The whole correction loop on real MRML and the real training pool:
CT node → file → model draft → segments → user edit → label + draft → VQSegCore pool → reopen.

VQSegCore.pool needs numpy, SimpleITK and slicerio only (no torch), so it runs in this venv.
"""

import numpy as np
import SimpleITK as sitk
import slicer
from mrml_images import (TWO_CLASSES, assert_same_grid, ct_image, ijk_to_ras, label_like, node_ijk_to_ras, oriented_mask, segment_ids,
                         volume_node_from_image)

from VQSegCore.classes import ClassTable
from VQSegCore.pool import Pool
from VQSegLib import segio


def model_draft(shape):
    draft = np.zeros(shape, dtype=np.uint8)
    draft[1:4, 2:6, 3:9] = 3  # lung_tumour
    draft[5:7, 8:10, 1:3] = 7  # nodule
    return draft


def test_corrected_case_goes_into_the_pool_and_reopens_voxel_for_voxel(scene, tmp_path):
    image = ct_image("oblique_anisotropic", size=(14, 12, 8))
    ct_node = volume_node_from_image(scene, image)
    work = tmp_path / "work"
    work.mkdir()

    # The module hands the CT to the core process; the core answers with a draft on the CT's grid.
    ct_path = work / "ct.nrrd"
    segio.writeVolumeToFile(ct_node, str(ct_path))
    draft = model_draft(sitk.GetArrayFromImage(image).shape)
    draft_path = work / "draft.nii.gz"
    sitk.WriteImage(label_like(sitk.ReadImage(str(ct_path)), draft), str(draft_path))
    segmentation_node = segio.importLabelmapAsSegmentation(scene, str(draft_path), TWO_CLASSES, ct_node)

    # The user erases a slab of the tumour and paints a missed part next to it (one Segment Editor stroke each).
    corrected_tumour = draft == 3
    corrected_tumour[2] = False
    corrected_tumour[1:4, 6:8, 4:7] = True
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        oriented_mask(corrected_tumour, ct_node), segmentation_node, "lung_tumour", slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    expected_label = np.where(corrected_tumour, 3, np.where(draft == 7, 7, 0)).astype(np.uint8)
    assert (expected_label != draft).sum() > 20

    label_path = work / "label.nii.gz"
    result = segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(label_path))
    assert result["voxelCounts"] == {"nodule": int((draft == 7).sum()), "lung_tumour": int(corrected_tumour.sum())}
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(label_path))), expected_label)

    classes = ClassTable.from_list(TWO_CLASSES)
    pool = Pool.create(tmp_path / "pool", "pilot", classes=classes)
    record = pool.add(ct_path, label=label_path, draft=draft_path, draft_model="lung/v0001")
    assert record.status == "labelled"
    assert record.edited_voxels == {"nodule": 0, "lung_tumour": int((corrected_tumour != (draft == 3)).sum())}
    assert pool.verify().intact

    # Reopen the pool case in an emptied scene, as a reviewer would.
    scene.Clear(False)
    reopened_ct = segio.loadVolumeFromFile(scene, str(record.image_path))
    reopened = segio.importLabelmapAsSegmentation(scene, str(record.label_path), TWO_CLASSES, reopened_ct)

    np.testing.assert_array_equal(slicer.util.arrayFromVolume(reopened_ct), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(node_ijk_to_ras(reopened_ct), ijk_to_ras(image), atol=1e-4)
    assert segment_ids(reopened) == ["nodule", "lung_tumour"]
    reexported = work / "reexported.nrrd"
    segio.exportSegmentationToLabelmapFile(reopened, reopened_ct, TWO_CLASSES, str(reexported))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(reexported))), expected_label)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(record.draft_path))), draft)
    assert_same_grid(sitk.ReadImage(str(reexported)), sitk.ReadImage(str(record.image_path)), 1e-9)

