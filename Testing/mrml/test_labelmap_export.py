"""Corrected segments → one label map on the CT's exact grid, with the class table's values."""

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from mrml_images import GEOMETRIES, MASS_IN_LUNG, TWO_CLASSES, assert_same_grid, ct_image, oriented_mask, tolerance_for, volume_node_from_image

from VQSegLib import segio


def segmentation_with_masks(scene, ct_node, masks):
    """A segmentation whose segments were painted on the CT grid, as the Segment Editor does."""
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Edited")
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    for segment_id, (name, mask) in masks.items():
        segmentation_node.GetSegmentation().AddEmptySegment(segment_id, name)
        assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(oriented_mask(mask, ct_node), segmentation_node, segment_id)
    return segmentation_node


def blobs(shape):
    tumour = np.zeros(shape, dtype=np.uint8)
    tumour[1:4, 2:6, 3:9] = 1
    nodule = np.zeros(shape, dtype=np.uint8)
    nodule[4:6, 7:10, 1:4] = 1
    return tumour, nodule


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_export_is_on_the_reference_grid_with_class_values(scene, tmp_path, geometry, suffix):
    image = ct_image(geometry)
    ct_node = volume_node_from_image(scene, image)
    tumour, nodule = blobs(sitk.GetArrayFromImage(image).shape)
    segmentation_node = segmentation_with_masks(scene, ct_node, {"lung_tumour": ("Lung tumour", tumour), "nodule": ("Nodule", nodule)})
    path = tmp_path / ("label" + suffix)

    result = segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(path))

    written = sitk.ReadImage(str(path))
    expected = np.where(tumour == 1, 3, np.where(nodule == 1, 7, 0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), expected)
    assert written.GetPixelID() == sitk.sitkUInt8
    assert_same_grid(written, image, tolerance_for(path))
    assert result == {"voxelCounts": {"nodule": int(nodule.sum()), "lung_tumour": int(tumour.sum())},
                      "ignoredSegmentIds": [], "missingClassIds": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_renamed_segment_still_exports_to_its_class_value(scene, tmp_path):
    image = ct_image()
    ct_node = volume_node_from_image(scene, image)
    tumour, nodule = blobs(sitk.GetArrayFromImage(image).shape)
    # the user swapped the display names: values must follow the ids
    segmentation_node = segmentation_with_masks(scene, ct_node, {"lung_tumour": ("Nodule", tumour), "nodule": ("Lung tumour", nodule)})
    path = tmp_path / "label.nii.gz"

    segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(path))

    written = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    np.testing.assert_array_equal(written == 3, tumour == 1)
    np.testing.assert_array_equal(written == 7, nodule == 1)


def test_extra_user_segment_is_reported_and_not_exported(scene, tmp_path):
    image = ct_image()
    ct_node = volume_node_from_image(scene, image)
    tumour, nodule = blobs(sitk.GetArrayFromImage(image).shape)
    segmentation_node = segmentation_with_masks(
        scene, ct_node, {"lung_tumour": ("Lung tumour", tumour), "Segment_1": ("Nodule", nodule)})  # a class name, not a class id
    path = tmp_path / "label.nii.gz"

    result = segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(path))

    assert result["ignoredSegmentIds"] == ["Segment_1"]
    assert result["missingClassIds"] == ["nodule"]
    assert result["voxelCounts"] == {"nodule": 0, "lung_tumour": int(tumour.sum())}
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), tumour * 3)


def test_segment_recreated_with_the_class_terminology_exports_to_the_class_value(scene, tmp_path):
    image = ct_image()
    ct_node = volume_node_from_image(scene, image)
    tumour, _ = blobs(sitk.GetArrayFromImage(image).shape)
    segmentation_node = segmentation_with_masks(scene, ct_node, {"Segment_7": ("my tumour", tumour)})
    segmentation_node.GetSegmentation().GetSegment("Segment_7").SetTag("TerminologyEntry", MASS_IN_LUNG)
    path = tmp_path / "label.nrrd"

    result = segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(path))

    assert result["ignoredSegmentIds"] == [] and result["missingClassIds"] == ["nodule"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), tumour * 3)


def test_without_any_class_segment_the_label_map_is_empty_not_everything(scene, tmp_path):
    image = ct_image("left_handed_flipped")
    ct_node = volume_node_from_image(scene, image)
    tumour, _ = blobs(sitk.GetArrayFromImage(image).shape)
    # Slicer exports *all* segments for an empty id list; the adapter must not pass one
    segmentation_node = segmentation_with_masks(scene, ct_node, {"Segment_1": ("Tumour", tumour)})
    path = tmp_path / "label.nii.gz"

    result = segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(path))

    written = sitk.ReadImage(str(path))
    assert not sitk.GetArrayFromImage(written).any()
    assert_same_grid(written, image, tolerance_for(path))
    assert result["ignoredSegmentIds"] == ["Segment_1"] and result["missingClassIds"] == ["nodule", "lung_tumour"]


def test_where_classes_overlap_the_later_class_in_the_table_wins(scene, tmp_path):
    image = ct_image()
    ct_node = volume_node_from_image(scene, image)
    tumour, _ = blobs(sitk.GetArrayFromImage(image).shape)
    nodule = np.zeros_like(tumour)
    nodule[2:5, 3:7, 4:10] = 1  # overlaps the tumour
    segmentation_node = segmentation_with_masks(scene, ct_node, {"lung_tumour": ("Lung tumour", tumour), "nodule": ("Nodule", nodule)})
    path = tmp_path / "label.nii.gz"

    segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(path))

    written = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    expected = np.where(tumour == 1, 3, np.where(nodule == 1, 7, 0))  # TWO_CLASSES lists nodule, then lung_tumour
    np.testing.assert_array_equal(written, expected)


def test_export_replaces_an_existing_file_and_leaves_the_scene_as_it_was(scene, tmp_path):
    image = ct_image()
    ct_node = volume_node_from_image(scene, image)
    tumour, nodule = blobs(sitk.GetArrayFromImage(image).shape)
    segmentation_node = segmentation_with_masks(scene, ct_node, {"lung_tumour": ("Lung tumour", tumour), "nodule": ("Nodule", nodule)})
    segmentation_node.CreateDefaultDisplayNodes()
    path = tmp_path / "label.nii.gz"
    path.write_bytes(b"an older export")
    nodes_before = sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))

    segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(path))

    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).max() == 7
    assert sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())) == nodes_before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_bad_class_table_is_refused_before_anything_is_written(scene, tmp_path):
    image = ct_image()
    ct_node = volume_node_from_image(scene, image)
    segmentation_node = segmentation_with_masks(scene, ct_node, {})
    duplicate_values = [dict(TWO_CLASSES[0]), dict(TWO_CLASSES[1], value=7)]

    with pytest.raises(ValueError):
        segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, duplicate_values, str(tmp_path / "label.nii.gz"))
    assert list(tmp_path.iterdir()) == []
