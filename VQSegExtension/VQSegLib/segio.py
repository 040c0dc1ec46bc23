"""Volumes and segmentations to and from files, for the hand-over to the VQSegCore process.

Only MRML nodes, storage nodes and static module logic are used (no `slicer.app`, no
`slicer.util.loadVolume/exportNode`), so the same code runs inside Slicer and on the `slicer-core`
wheel in CI (Testing/mrml).

`classes` is the model card's class table: a list of dicts as written by
`VQSegCore.classes.SegmentClass.to_dict()`:
`{"value": int, "id": str, "name": str, "color": [r, g, b] in 0..1, "terminology": "<TerminologyEntry>"}`.
Segment ID = class id; segments are found by ID, then by terminology, never by display name
(users rename segments). Label values on disk are always the class `value`s.
"""

import os
import uuid
from typing import Dict, List, Optional

import numpy as np


# -- volumes ---------------------------------------------------------------------------------


def writeVolumeToFile(volumeNode, path):
    """Write a scalar (or labelmap) volume to .nrrd (uncompressed: fast) or .nii.gz.

    The node's own storage node is left alone, so saving the scene later still goes where it did.
    The file holds the node's IJK→RAS (oblique directions included); parent transforms are not applied.
    """
    _writeVolumeAtomically(volumeNode, path)


def loadVolumeFromFile(scene, path, name=None, labelmap=False):
    """Read a volume file into a new scalar (or labelmap) volume node with display nodes.

    The voxel grid is kept exactly as stored (no flip to a right-handed IJK), so label maps exported
    with this node as reference have the file's size, spacing, origin and direction. No storage node
    is attached: saving the scene must never overwrite the file (pool files are hashed).
    """
    className = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    volumeNode = _readVolumeNode(scene, path, className, name or _baseName(path))
    volumeNode.CreateDefaultDisplayNodes()
    return volumeNode


# -- segmentations ---------------------------------------------------------------------------


def importLabelmapAsSegmentation(scene, labelmapPath, classes, referenceVolumeNode, name=None, segmentationNode=None):
    """Load a label map file as one segment per class of `classes` and return the segmentation node.

    Label value `value` goes to the class's segment (ID = class id, name, colour and terminology from
    the table); classes absent from the file still get an (empty) segment, so a missed tumour can be
    drawn. Values outside the table are dropped. With `segmentationNode`, its class segments (found by
    ID or terminology) are replaced, content and properties, and its other segments are left alone.
    """
    import slicer
    import vtk

    _checkClasses(classes)
    labelNode = _readVolumeNode(scene, labelmapPath, "vtkMRMLLabelMapVolumeNode", "VQSeg import")
    try:
        _keepOnlyClassValues(labelNode, classes)
        transformNodeId = referenceVolumeNode.GetTransformNodeID()
        labelNode.SetAndObserveTransformNodeID(transformNodeId)
        if segmentationNode is None:
            segmentationNode = scene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", name or "{} segmentation".format(referenceVolumeNode.GetName()))
            segmentationNode.SetAndObserveTransformNodeID(transformNodeId)
        segmentationNode.CreateDefaultDisplayNodes()
        _setReferenceGeometry(segmentationNode, referenceVolumeNode)

        existing = findClassSegmentIds(segmentationNode, classes)
        segmentIds = {c["id"]: existing[c["id"]] or c["id"] for c in classes}
        for segmentClass in classes:  # created up front, so the segments follow the table's order
            if existing[segmentClass["id"]] is None:
                segmentationNode.GetSegmentation().AddEmptySegment(segmentClass["id"], segmentClass["name"], list(segmentClass["color"]))
        # ImportLabelmapToSegmentationNode maps label k to entry k-1; empty entries are skipped.
        idsByLabel = vtk.vtkStringArray()
        idsByLabel.SetNumberOfValues(max(c["value"] for c in classes))
        for segmentClass in classes:
            idsByLabel.SetValue(segmentClass["value"] - 1, segmentIds[segmentClass["id"]])
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelNode, segmentationNode, idsByLabel):
            raise RuntimeError("Slicer could not import the label map {} into {}".format(labelmapPath, segmentationNode.GetName()))
        for segmentClass in classes:
            _describeSegment(segmentationNode.GetSegmentation().GetSegment(segmentIds[segmentClass["id"]]), segmentClass)
    finally:
        _removeNodes(scene, labelNode)
    _placeBeside(segmentationNode, referenceVolumeNode)
    return segmentationNode


def exportSegmentationToLabelmapFile(segmentationNode, referenceVolumeNode, classes, path):
    """Write the class segments as one label map on the reference volume's exact grid.

    Returns `{"voxelCounts": {class id: voxels}, "ignoredSegmentIds": [...], "missingClassIds": [...]}`:
    segments outside the class table are not written (the caller warns about them); a class without
    a segment is written as no voxels. Where class segments overlap, the later class wins.
    The file is written under a temporary name in the same folder and renamed into place.
    """
    import slicer

    _checkClasses(classes)
    if referenceVolumeNode is None or referenceVolumeNode.GetImageData() is None:
        raise ValueError("a reference volume with voxels is needed: the label map takes its grid")
    found = findClassSegmentIds(segmentationNode, classes)
    exported = [c for c in classes if found[c["id"]] is not None]
    scene = segmentationNode.GetScene()
    # Export adds a colour table for its label node; it goes when the label node goes.
    colorNodeIdsBefore = _nodeIds(scene, "vtkMRMLColorTableNode")
    labelNode = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "VQSeg export")
    try:
        if exported:
            # Export numbers the segments 1..n in list order; the class values are mapped afterwards
            # (a colour table would match by terminology, then by the renameable segment name).
            ids = [found[c["id"]] for c in exported]
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                    segmentationNode, _stringArray(ids), labelNode, referenceVolumeNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
                raise RuntimeError("Slicer could not export segmentation {} to a label map".format(segmentationNode.GetName()))
            valueByPosition = np.zeros(len(exported) + 1, dtype=np.uint8)
            valueByPosition[1:] = [c["value"] for c in exported]
            labels = valueByPosition[slicer.util.arrayFromVolume(labelNode)]
        else:
            labels = np.zeros(tuple(reversed(referenceVolumeNode.GetImageData().GetDimensions())), dtype=np.uint8)
            labelNode.SetIJKToRASMatrix(_ijkToRas(referenceVolumeNode))
        slicer.util.updateVolumeFromArray(labelNode, labels)  # the node keeps its IJK→RAS
        if not volumeGeometryMatches(labelNode, referenceVolumeNode):
            raise RuntimeError("the exported label map is not on the grid of {}".format(referenceVolumeNode.GetName()))
        _writeVolumeAtomically(labelNode, path)
    finally:
        _removeNodes(scene, labelNode, _nodesAddedSince(scene, "vtkMRMLColorTableNode", colorNodeIdsBefore))
    classSegmentIds = set(found.values())
    return {
        "voxelCounts": {c["id"]: int(np.count_nonzero(labels == c["value"])) for c in classes},
        "ignoredSegmentIds": [s for s in _segmentIds(segmentationNode) if s not in classSegmentIds],
        "missingClassIds": [c["id"] for c in classes if found[c["id"]] is None],
    }


def findClassSegmentIds(segmentationNode, classes) -> Dict[str, Optional[str]]:
    """{class id: segment id or None}: the segment whose ID is the class id, else the first unclaimed
    segment with the class's terminology (a segment the user re-created in the Segment Editor)."""
    segmentation = segmentationNode.GetSegmentation()
    found = {c["id"]: (c["id"] if segmentation.GetSegment(c["id"]) else None) for c in classes}
    claimed = {segmentId for segmentId in found.values() if segmentId}
    for segmentClass in classes:
        wanted = _terminologyCodes(segmentClass.get("terminology", ""))
        if found[segmentClass["id"]] is not None or wanted is None:
            continue
        for segmentId in _segmentIds(segmentationNode):
            if segmentId not in claimed and _terminologyCodes(_terminologyOf(segmentation.GetSegment(segmentId))) == wanted:
                found[segmentClass["id"]] = segmentId
                claimed.add(segmentId)
                break
    return found


def segmentationGeometryMatches(segmentationNode, volumeNode, tolerance=1e-4) -> bool:
    """Whether the segmentation's reference geometry is the volume's voxel grid (same extent and IJK→RAS)."""
    import slicer
    import vtk

    geometry = segmentationNode.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    if not geometry or volumeNode.GetImageData() is None:
        return False
    reference = slicer.vtkOrientedImageData()
    if not slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, reference, False):
        return False
    referenceMatrix = vtk.vtkMatrix4x4()
    reference.GetImageToWorldMatrix(referenceMatrix)
    return (tuple(reference.GetExtent()) == tuple(volumeNode.GetImageData().GetExtent())
            and _matricesClose(referenceMatrix, _ijkToRas(volumeNode), tolerance))


def volumeGeometryMatches(volumeNode, otherVolumeNode, tolerance=1e-6) -> bool:
    """Whether two volume nodes have the same voxel grid (dimensions and IJK→RAS)."""
    if volumeNode.GetImageData() is None or otherVolumeNode.GetImageData() is None:
        return False
    return (tuple(volumeNode.GetImageData().GetDimensions()) == tuple(otherVolumeNode.GetImageData().GetDimensions())
            and _matricesClose(_ijkToRas(volumeNode), _ijkToRas(otherVolumeNode), tolerance))


# -- helpers ---------------------------------------------------------------------------------


def _readVolumeNode(scene, path, className, name):
    import slicer

    if not os.path.isfile(path):
        raise FileNotFoundError("no such file: {}".format(path))
    volumeNode = scene.AddNewNodeByClass(className, name)
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(os.path.abspath(path))
    storageNode.SetSingleFile(1)  # never merge sibling files (image/label/draft) into a series
    storageNode.SetForceRightHandedIJKCoordinateSystem(False)  # keep the file's grid
    if not storageNode.ReadData(volumeNode):
        _removeNodes(scene, volumeNode)
        raise IOError("could not read {}: {}".format(path, _messages(storageNode)))
    return volumeNode


def _writeVolumeAtomically(volumeNode, path):
    import slicer

    path = os.path.abspath(path)
    folder, fileName = os.path.split(path)
    # Same folder (rename stays atomic) and same suffix (ITK picks the format from it).
    temporaryPath = os.path.join(folder, ".vqseg-{}-{}".format(uuid.uuid4().hex[:8], fileName))
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(temporaryPath)
    storageNode.SetUseCompression(1 if path.lower().endswith(".gz") else 0)
    try:
        if not storageNode.WriteData(volumeNode) or not os.path.isfile(temporaryPath):
            raise IOError("could not write {}: {}".format(path, _messages(storageNode)))
        os.replace(temporaryPath, path)
    finally:
        if os.path.exists(temporaryPath):
            os.remove(temporaryPath)


def _keepOnlyClassValues(labelNode, classes):
    import slicer

    labels = slicer.util.arrayFromVolume(labelNode)
    known = np.isin(labels, [c["value"] for c in classes])
    if not known[labels != 0].all():
        labels[~known] = 0
        slicer.util.arrayFromVolumeModified(labelNode)


def _describeSegment(segment, segmentClass):
    segment.SetName(segmentClass["name"])
    segment.SetColor(*[float(c) for c in segmentClass["color"]])
    # Set explicitly: Slicer must not regenerate them from the terminology.
    segment.SetNameAutoGenerated(False)
    segment.SetColorAutoGenerated(False)
    terminology = segmentClass.get("terminology", "")
    if terminology:
        if hasattr(segment, "SetTerminology"):  # Slicer 5.10+
            segment.SetTerminology(terminology)
        else:
            segment.SetTag(segment.GetTerminologyEntryTagName(), terminology)


def _terminologyOf(segment) -> str:
    if hasattr(segment, "GetTerminology"):  # Slicer 5.10+
        return segment.GetTerminology()
    import vtk

    value = vtk.mutable("")
    return str(value) if segment.GetTag(segment.GetTerminologyEntryTagName(), value) else ""


def _terminologyCodes(terminology):
    """The coded parts of a TerminologyEntry (category, type, modifier, region, region modifier) as
    (scheme, value) pairs; None when there is no type code. Context names and meanings are ignored:
    Slicer may rewrite them."""
    parts = terminology.split("~") if terminology else []
    if len(parts) != 7:
        return None
    codes = tuple(tuple(part.split("^")[:2]) for index, part in enumerate(parts) if index not in (0, 4))
    return codes if codes[1][1] else None


def _setReferenceGeometry(segmentationNode, referenceVolumeNode):
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
    segmentationNode.SetNodeReferenceID(segmentationNode.GetReferenceImageGeometryReferenceRole(), referenceVolumeNode.GetID())


def _placeBeside(segmentationNode, volumeNode):
    """Put the segmentation under the volume's subject hierarchy parent (its study)."""
    import slicer

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(segmentationNode.GetScene())
    volumeItem = shNode.GetItemByDataNode(volumeNode) if shNode else 0
    if not volumeItem:
        return
    parentItem = shNode.GetItemParent(volumeItem)
    segmentationItem = shNode.GetItemByDataNode(segmentationNode)
    if segmentationItem:
        shNode.SetItemParent(segmentationItem, parentItem)
    else:
        shNode.CreateItem(parentItem, segmentationNode)


def _ijkToRas(volumeNode):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return matrix


def _matricesClose(matrix, otherMatrix, tolerance) -> bool:
    return all(abs(matrix.GetElement(row, column) - otherMatrix.GetElement(row, column)) <= tolerance
               for row in range(4) for column in range(4))


def _segmentIds(segmentationNode) -> List[str]:
    segmentation = segmentationNode.GetSegmentation()
    return [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]


def _stringArray(values):
    import vtk

    array = vtk.vtkStringArray()
    for value in values:
        array.InsertNextValue(value)
    return array


def _removeNodes(scene, volumeNode, extraNodes=()):
    """Remove a helper volume node with its display and storage nodes (and `extraNodes`)."""
    helpers = [volumeNode.GetNthDisplayNode(index) for index in range(volumeNode.GetNumberOfDisplayNodes())]
    helpers += [volumeNode.GetStorageNode(), *extraNodes]
    scene.RemoveNode(volumeNode)
    for node in helpers:
        if node is not None and node.GetScene() is scene:
            scene.RemoveNode(node)


def _nodeIds(scene, className):
    return {scene.GetNthNodeByClass(index, className).GetID() for index in range(scene.GetNumberOfNodesByClass(className))}


def _nodesAddedSince(scene, className, nodeIdsBefore):
    return [scene.GetNodeByID(nodeId) for nodeId in _nodeIds(scene, className) - nodeIdsBefore]


def _checkClasses(classes):
    if not classes:
        raise ValueError("the class table is empty")
    values = [int(c["value"]) for c in classes]
    ids = [c["id"] for c in classes]
    if len(set(values)) != len(values) or len(set(ids)) != len(ids):
        raise ValueError("class values and ids must be unique, got values {} and ids {}".format(values, ids))
    if not all(1 <= value <= 255 for value in values):
        raise ValueError("class values must be in 1..255, got {}".format(values))


def _messages(storageNode) -> str:
    messages = storageNode.GetUserMessages()
    return messages.GetAllMessagesAsString() if messages is not None and messages.GetNumberOfMessages() else "no details"


def _baseName(path) -> str:
    fileName = os.path.basename(path)
    for suffix in (".nii.gz", ".seg.nrrd", ".nrrd", ".nii", ".nhdr", ".mha", ".mhd"):
        if fileName.lower().endswith(suffix):
            return fileName[:-len(suffix)]
    return os.path.splitext(fileName)[0]
