"""Model output (a label map file) → a segmentation node with one segment per class of the table."""

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support
from mrml_images import (MASS_IN_LUNG, TWO_CLASSES, ct_image, label_like, oriented_mask, segment_ids, terminology_tag,
                         volume_node_from_image)

from VQSegLib import segio


def segment_mask(segmentation_node, segment_id, reference_node):
    """The segment as a [k, j, i] 0/1 array on the reference grid, read through the real export."""
    label_node = segmentation_node.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentation_node, ids, label_node, reference_node, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    mask = slicer.util.arrayFromVolume(label_node).copy()
    segmentation_node.GetScene().RemoveNode(label_node)
    return mask


@pytest.fixture
def ct(scene):
    image = ct_image()
    return image, volume_node_from_image(scene, image)


def write_label(tmp_path, image, labels, name="draft.nii.gz"):
    path = tmp_path / name
    sitk.WriteImage(label_like(image, labels), str(path))
    return str(path)


def test_segments_follow_the_class_table_ids_names_colours_terminology_and_values(scene, tmp_path, ct):
    image, ct_node = ct
    labels = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)
    labels[1:3, 2:5, 3:8] = 3  # lung_tumour
    labels[4:6, 6:9, 1:3] = 7  # nodule

    segmentation_node = segio.importLabelmapAsSegmentation(scene, write_label(tmp_path, image, labels), TWO_CLASSES, ct_node)

    assert segment_ids(segmentation_node) == ["nodule", "lung_tumour"]  # table order, not value order
    segmentation = segmentation_node.GetSegmentation()
    for segment_class in TWO_CLASSES:
        segment = segmentation.GetSegment(segment_class["id"])
        assert segment.GetName() == segment_class["name"]
        np.testing.assert_allclose(segment.GetColor(), segment_class["color"])
        assert terminology_tag(segment) == segment_class["terminology"]
        mask = segment_mask(segmentation_node, segment_class["id"], ct_node)
        np.testing.assert_array_equal(mask != 0, labels == segment_class["value"])
    assert segmentation_node.GetName() == "CT segmentation"


def test_class_absent_from_the_label_map_still_gets_an_empty_segment(scene, tmp_path, ct):
    image, ct_node = ct
    labels = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)
    labels[2:4, 2:4, 2:4] = 3  # no voxel of value 7

    segmentation_node = segio.importLabelmapAsSegmentation(scene, write_label(tmp_path, image, labels), TWO_CLASSES, ct_node)

    assert segment_ids(segmentation_node) == ["nodule", "lung_tumour"]
    assert not segment_mask(segmentation_node, "nodule", ct_node).any()
    assert segment_mask(segmentation_node, "lung_tumour", ct_node).sum() == 8


def test_values_outside_the_class_table_are_dropped(scene, tmp_path, ct):
    image, ct_node = ct
    labels = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)
    labels[1, 1, 1:4] = 3
    labels[5, 5, 5] = 9
    labels[6, 6, 6] = 1  # 1 is position 1, but no class has value 1

    segmentation_node = segio.importLabelmapAsSegmentation(scene, write_label(tmp_path, image, labels), TWO_CLASSES, ct_node)
    exported = tmp_path / "export.nii.gz"
    counts = segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(exported))["voxelCounts"]

    assert segment_ids(segmentation_node) == ["nodule", "lung_tumour"]
    assert counts == {"nodule": 0, "lung_tumour": 3}
    # nor kept in the segments' shared labelmap, where a segment the user adds later could pick them up
    shared = segmentation_node.GetSegmentation().GetSegment("lung_tumour").GetRepresentation("Binary labelmap")
    assert set(np.unique(numpy_support.vtk_to_numpy(shared.GetPointData().GetScalars()))) <= {0, 3, 7}
    assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(exported))))) == {0, 3}


def test_reference_geometry_and_subject_hierarchy_follow_the_volume(scene, tmp_path, ct):
    image, ct_node = ct
    sh_node = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = sh_node.CreateFolderItem(sh_node.GetSceneItemID(), "Study")
    sh_node.CreateItem(study, ct_node)
    labels = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)

    segmentation_node = segio.importLabelmapAsSegmentation(scene, write_label(tmp_path, image, labels), TWO_CLASSES, ct_node, name="Draft")

    assert segmentation_node.GetName() == "Draft"
    assert segmentation_node.GetNodeReference(segmentation_node.GetReferenceImageGeometryReferenceRole()) is ct_node
    assert segio.segmentationGeometryMatches(segmentation_node, ct_node)
    assert sh_node.GetItemParent(sh_node.GetItemByDataNode(segmentation_node)) == study
    assert segmentation_node.GetDisplayNode() is not None
    # the helper label map node and its display/colour nodes are gone
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0
    assert scene.GetNumberOfNodesByClass("vtkMRMLVolumeArchetypeStorageNode") == 0


def test_geometry_check_tells_another_grid_apart(scene, tmp_path, ct):
    image, ct_node = ct
    labels = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)
    segmentation_node = segio.importLabelmapAsSegmentation(scene, write_label(tmp_path, image, labels), TWO_CLASSES, ct_node)
    other_node = volume_node_from_image(scene, ct_image("left_handed_flipped"), name="Other CT")

    assert segio.segmentationGeometryMatches(segmentation_node, ct_node)
    assert not segio.segmentationGeometryMatches(segmentation_node, other_node)


def test_reimport_replaces_class_segments_and_keeps_the_users_other_segments(scene, tmp_path, ct):
    image, ct_node = ct
    first = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)
    first[1:3, 1:3, 1:3] = 3
    segmentation_node = segio.importLabelmapAsSegmentation(scene, write_label(tmp_path, image, first, "first.nii.gz"), TWO_CLASSES, ct_node)
    segmentation = segmentation_node.GetSegmentation()
    segmentation.GetSegment("lung_tumour").SetName("renamed by the user")
    notes = np.zeros_like(first)
    notes[5:7, 7:10, 9:12] = 1
    segmentation.AddEmptySegment("user_notes", "Notes", [0.1, 0.1, 0.9])
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(oriented_mask(notes, ct_node), segmentation_node, "user_notes")
    second = np.zeros_like(first)
    second[3:5, 4:7, 6:9] = 3
    second[0, 0, 0:2] = 7

    again = segio.importLabelmapAsSegmentation(scene, write_label(tmp_path, image, second, "second.nii.gz"), TWO_CLASSES, ct_node,
                                               segmentationNode=segmentation_node)

    assert again is segmentation_node
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    assert segment_ids(segmentation_node) == ["nodule", "lung_tumour", "user_notes"]
    assert segmentation.GetSegment("lung_tumour").GetName() == "Lung tumour"
    np.testing.assert_array_equal(segment_mask(segmentation_node, "lung_tumour", ct_node) != 0, second == 3)
    np.testing.assert_array_equal(segment_mask(segmentation_node, "nodule", ct_node) != 0, second == 7)
    np.testing.assert_array_equal(segment_mask(segmentation_node, "user_notes", ct_node) != 0, notes == 1)


def test_a_recreated_segment_is_found_by_terminology_not_by_name(scene, ct):
    _, ct_node = ct
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation = segmentation_node.GetSegmentation()
    segmentation.AddEmptySegment("Segment_1", "Nodule")  # the name of a class, but no terminology
    segmentation.AddEmptySegment("Segment_2", "my tumour")
    segmentation.GetSegment("Segment_2").SetTag("TerminologyEntry", MASS_IN_LUNG.replace("DICOM master list", "renamed context"))

    found = segio.findClassSegmentIds(segmentation_node, TWO_CLASSES)

    assert found == {"nodule": None, "lung_tumour": "Segment_2"}


def test_id_match_wins_over_terminology_and_claims_the_segment_once(scene):
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation = segmentation_node.GetSegmentation()
    segmentation.AddEmptySegment("other", "other")
    segmentation.GetSegment("other").SetTag("TerminologyEntry", MASS_IN_LUNG)
    segmentation.AddEmptySegment("lung_tumour", "Lung tumour")
    classes = TWO_CLASSES + [{"value": 9, "id": "second_mass", "name": "Mass", "color": [1, 1, 0], "terminology": MASS_IN_LUNG}]

    found = segio.findClassSegmentIds(segmentation_node, classes)

    assert found == {"nodule": None, "lung_tumour": "lung_tumour", "second_mass": "other"}


def test_segmentation_lives_under_the_volume_parent_transform(scene, tmp_path, ct):
    image, ct_node = ct
    transform_node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Registration")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 12.5)
    matrix.SetElement(2, 3, -4.0)
    transform_node.SetMatrixTransformToParent(matrix)
    ct_node.SetAndObserveTransformNodeID(transform_node.GetID())
    labels = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)
    labels[2:5, 3:6, 4:8] = 3

    segmentation_node = segio.importLabelmapAsSegmentation(scene, write_label(tmp_path, image, labels), TWO_CLASSES, ct_node)
    exported = tmp_path / "export.nrrd"
    segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, TWO_CLASSES, str(exported))

    assert segmentation_node.GetTransformNodeID() == transform_node.GetID()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(exported))), labels)


def test_the_core_class_table_in_its_json_form_is_understood(scene, tmp_path, ct):
    from VQSegCore.classes import LUNG_TUMOUR

    image, ct_node = ct
    labels = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)
    labels[2:4, 3:5, 4:6] = 1
    classes = LUNG_TUMOUR.to_list()

    segmentation_node = segio.importLabelmapAsSegmentation(scene, write_label(tmp_path, image, labels), classes, ct_node)
    result = segio.exportSegmentationToLabelmapFile(segmentation_node, ct_node, classes, str(tmp_path / "label.nii.gz"))

    segment = segmentation_node.GetSegmentation().GetSegment("lung_tumour")
    assert segment.GetName() == "Lung tumour" and terminology_tag(segment) == MASS_IN_LUNG
    assert result["voxelCounts"] == {"lung_tumour": 8}
