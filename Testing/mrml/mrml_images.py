"""Small CT-like images with scanner geometries, and the bridges between SimpleITK (LPS) and MRML (RAS)."""

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from helpers.images import rotation

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


# Oblique gantry tilt with thick slices, and a left-handed grid (z flipped): Slicer would flip the
# latter to right-handed on a default load, which must not happen to a pool case.
GEOMETRIES = {
    "oblique_anisotropic": dict(spacing=(0.7, 0.9, 2.5), origin=(-12.345678, 33.3, -250.125),
                                direction=rotation("z", 17) @ rotation("x", -23)),
    "left_handed_flipped": dict(spacing=(0.6, 0.8, 5.0), origin=(195.5, -20.25, 400.0),
                                direction=rotation("y", 11) @ np.diag([1.0, 1.0, -1.0])),
}

# The lung-tumour class as VQSegCore.classes.LUNG_TUMOUR.to_list() gives it (kept literal: the
# adapter must work from the JSON form of the class table).
MASS_IN_LUNG = (
    "Segmentation category and type - DICOM master list"
    "~SCT^49755003^Morphologically Altered Structure~SCT^4147007^Mass~^^"
    "~Anatomic codes - DICOM master list~SCT^39607008^Lung~^^"
)
NODULE_IN_LUNG = MASS_IN_LUNG.replace("SCT^4147007^Mass", "SCT^27925004^Nodule")
TWO_CLASSES = [  # values 3 and 7, listed 7 first: order and values are both not 1..n
    {"value": 7, "id": "nodule", "name": "Nodule", "color": [0.2, 0.8, 0.3], "terminology": NODULE_IN_LUNG},
    {"value": 3, "id": "lung_tumour", "name": "Lung tumour", "color": [0.86, 0.24, 0.24], "terminology": MASS_IN_LUNG},
]


def ct_image(geometry="oblique_anisotropic", size=(13, 11, 7), seed=0):
    """An int16 image of size (x, y, z) with random HU-like values and the named geometry."""
    spec = GEOMETRIES[geometry]
    array = np.random.default_rng(seed).integers(-1024, 1500, size=tuple(reversed(size))).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spec["spacing"])
    image.SetOrigin(spec["origin"])
    image.SetDirection(tuple(np.asarray(spec["direction"], dtype=float).ravel()))
    return image


def label_like(image, array):
    label = sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8))
    label.CopyInformation(image)
    return label


def ijk_to_ras(image):
    """The 4x4 IJK→RAS matrix of a SimpleITK image (which stores LPS)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin())
    return matrix


def node_ijk_to_ras(volume_node):
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def vtk_matrix(array):
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def volume_node_from_image(scene, image, name="CT", class_name="vtkMRMLScalarVolumeNode"):
    """A volume node holding the image's voxels ([k, j, i]) on its grid, as Slicer would show it."""
    volume_node = scene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(volume_node, sitk.GetArrayFromImage(image))
    volume_node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras(image)))
    volume_node.CreateDefaultDisplayNodes()
    return volume_node


def oriented_mask(mask, volume_node):
    """A binary vtkOrientedImageData on the volume's grid, as a Segment Editor effect produces."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*reversed(mask.shape))
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return image


def assert_same_grid(image, other, tolerance):
    assert image.GetSize() == other.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), other.GetSpacing(), atol=tolerance)
    np.testing.assert_allclose(image.GetOrigin(), other.GetOrigin(), atol=tolerance)
    np.testing.assert_allclose(image.GetDirection(), other.GetDirection(), atol=tolerance)


def tolerance_for(path):
    """NIfTI stores spacing, origin and the rotation quaternion as float32; NRRD keeps doubles."""
    return 1e-4 if str(path).endswith(".nii.gz") else 1e-9


def segment_ids(segmentation_node):
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def terminology_tag(segment):
    value = vtk.mutable("")
    return str(value) if segment.GetTag(segment.GetTerminologyEntryTagName(), value) else None
