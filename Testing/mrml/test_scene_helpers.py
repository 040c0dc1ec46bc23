"""Scene helpers against real MRML: a node removed while a run went on, the uncertainty overlay of the last run."""

import slicer
import vtk

from VQSegLib import scene as scene_helpers
from VQSegLib import segmentation_tags


def test_a_node_removed_or_left_by_a_scene_close_is_not_in_the_scene(scene):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    kept = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "other")
    assert scene_helpers.isInScene(volume) and not scene_helpers.isInScene(None)
    scene.RemoveNode(volume)
    assert not scene_helpers.isInScene(volume) and scene_helpers.isInScene(kept)
    scene.Clear(False)  # what File > Close Scene does
    assert not scene_helpers.isInScene(kept)


def test_the_last_uncertainty_overlay_is_removed_and_forgotten(scene):
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumour")
    overlay = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "uncertainty")
    unrelated = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "another uncertainty")
    segmentation_tags.recordUncertaintyNodeId(segmentation, overlay.GetID())

    scene_helpers.removeUncertaintyOverlay(scene, segmentation)
    assert scene.GetNodeByID(overlay.GetID()) is None and scene_helpers.isInScene(unrelated)
    assert segmentation_tags.uncertaintyNodeIdOf(segmentation) == ""
    scene_helpers.removeUncertaintyOverlay(scene, segmentation)  # none recorded: nothing to do
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1

    segmentation_tags.recordUncertaintyNodeId(segmentation, unrelated.GetID())
    scene.RemoveNode(unrelated)  # the user deleted the overlay: the tag points at nothing
    scene_helpers.removeUncertaintyOverlay(scene, segmentation)
    assert segmentation_tags.uncertaintyNodeIdOf(segmentation) == "" and isinstance(segmentation, slicer.vtkMRMLSegmentationNode)


def test_the_uncertainty_overlay_draws_only_uncertain_voxels(scene):
    overlay = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "uncertainty")
    overlay.CreateDefaultDisplayNodes()
    display = overlay.GetDisplayNode()
    scene_helpers.showOnlyFrom(display, scene_helpers.UNCERTAINTY_SHOWN_FROM, 1.0)
    assert display.GetApplyThreshold() == 1 and display.GetAutoThreshold() == 0
    assert (display.GetLowerThreshold(), display.GetUpperThreshold()) == (scene_helpers.UNCERTAINTY_SHOWN_FROM, 1.0)
    assert 0.0 < scene_helpers.UNCERTAINTY_SHOWN_FROM < 0.5


def test_a_new_roi_is_centred_on_the_ct(scene):
    from VQSegLib import roi

    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    image = vtk.vtkImageData()
    image.SetDimensions(20, 10, 5)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    volume.SetAndObserveImageData(image)
    volume.SetSpacing(2.0, 2.0, 4.0)
    volume.SetOrigin(10.0, -20.0, 100.0)
    center = roi.volumeCenterRas(volume)
    assert center == [10.0 + 19.0, -20.0 + 9.0, 100.0 + 8.0]  # IJK-to-RAS flips nothing here: origin + (n - 1) * spacing / 2
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    node.SetCenter(*center)
    node.SetSize(*roi.NEW_ROI_SIZE_MM)
    bounds = [0.0] * 6
    node.GetRASBounds(bounds)
    assert bounds == [center[0] - 30, center[0] + 30, center[1] - 30, center[1] + 30, center[2] - 30, center[2] + 30]


def test_the_first_image_volume_skips_labelmaps(scene):
    assert scene_helpers.firstImageVolume(scene) is None
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "mask")  # first in the scene, and a scalar volume by class
    assert scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode").IsA("vtkMRMLLabelMapVolumeNode")
    assert scene_helpers.firstImageVolume(scene) is None
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "later")
    assert scene_helpers.firstImageVolume(scene) is ct
