"""Small scene and view operations of the module: the segmentation's volume, empty segmentations,
the uncertainty heat overlay, and handing a segmentation to the Segment Editor.

Needs Slicer (imported inside the functions, so importing this file stays cheap).
"""

from typing import Dict, List

from VQSegLib import segmentation_tags

HEAT_OVERLAY_OPACITY = 0.4
# Uncertainty (normalised entropy, 0..1) below this is not drawn: PET-Heat maps 0 to black, so without a
# threshold the overlay would darken every certain voxel of the CT at the overlay's opacity.
UNCERTAINTY_SHOWN_FROM = 0.1


def isInScene(node) -> bool:
    """False for None and for a node removed from its scene (by the user or a scene close) while a run went on."""
    return node is not None and node.GetScene() is not None


def removeUncertaintyOverlay(scene, segmentationNode) -> None:
    """Remove the uncertainty map last shown for this segmentation: a new result replaces it, or has none."""
    nodeId = segmentation_tags.uncertaintyNodeIdOf(segmentationNode)
    previous = scene.GetNodeByID(nodeId) if nodeId else None
    if previous is not None:
        scene.RemoveNode(previous)
    segmentation_tags.forgetUncertaintyNodeId(segmentationNode)


def firstImageVolume(scene):
    """The first scalar volume that is an image, not a labelmap, or None. GetFirstNodeByClass would also
    answer a labelmap (vtkMRMLLabelMapVolumeNode derives from vtkMRMLScalarVolumeNode), which the
    panel's CT selector hides, so the panel would preselect an input the user cannot see."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if not node.IsA("vtkMRMLLabelMapVolumeNode"):
            return node
    return None


def referenceVolumeOf(segmentationNode):
    """The volume a segmentation was made on (its reference image geometry node), or None."""
    if segmentationNode is None:
        return None
    return segmentationNode.GetNodeReference(segmentationNode.GetReferenceImageGeometryReferenceRole())


def emptySegmentation(scene, classes: List[Dict], volumeNode, name: str):
    """A segmentation with one empty segment per class on the volume's grid (a pool case with no label or draft)."""
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    segmentationNode.SetNodeReferenceID(segmentationNode.GetReferenceImageGeometryReferenceRole(), volumeNode.GetID())
    for segmentClass in classes:
        segmentationNode.GetSegmentation().AddEmptySegment(segmentClass["id"], segmentClass["name"], list(segmentClass["color"]))
    return segmentationNode


def showAsHeatOverlay(overlayNode, backgroundNode, valueRange=(0.0, 1.0)) -> None:
    """Show `overlayNode` in the slice views as a heat map over `backgroundNode`."""
    import slicer

    display = overlayNode.GetDisplayNode()
    # The PET heat colour node is one of Slicer's default colour nodes (DICOMScalarVolumePlugin uses it too).
    display.SetAndObserveColorNodeID(slicer.modules.colors.logic().GetPETColorNodeID(slicer.vtkMRMLPETProceduralColorNode.PETheat))
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(*valueRange)
    showOnlyFrom(display, UNCERTAINTY_SHOWN_FROM, valueRange[1])
    slicer.util.setSliceViewerLayers(background=backgroundNode, foreground=overlayNode, foregroundOpacity=HEAT_OVERLAY_OPACITY)


def showOnlyFrom(display, lower: float, upper: float) -> None:
    """Draw only voxels in [lower, upper]: the scalar display node's threshold makes the others transparent
    in the slice views (as the Volumes module's Threshold does)."""
    display.AutoThresholdOff()
    display.SetThreshold(lower, upper)
    display.ApplyThresholdOn()


def openInSegmentEditor(segmentationNode, volumeNode, segmentId=None) -> None:
    """Switch to the Segment Editor module with this segmentation and volume, `segmentId` selected."""
    import slicer

    slicer.util.selectModule("SegmentEditor")
    # As in Docs/developer_guide/script_repository/segmentations.md; SegmentEditor.py creates `self.editor` in setup().
    editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
    editor.setSegmentationNode(segmentationNode)
    if volumeNode is not None:
        if hasattr(editor, "setSourceVolumeNode"):  # "source" naming since Slicer 5.2; "master" before
            editor.setSourceVolumeNode(volumeNode)
        else:
            editor.setMasterVolumeNode(volumeNode)
    if segmentId:
        editor.setCurrentSegmentID(segmentId)
