"""CT volume node ↔ file through storage nodes: the hand-over to and from the VQSegCore process."""

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from mrml_images import GEOMETRIES, assert_same_grid, ct_image, node_ijk_to_ras, ijk_to_ras, tolerance_for, volume_node_from_image

from VQSegLib import segio

SUFFIXES = [".nrrd", ".nii.gz"]


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_volume_node_written_to_file_reads_back_identical_in_simpleitk(scene, tmp_path, geometry, suffix):
    image = ct_image(geometry)
    volume_node = volume_node_from_image(scene, image)
    path = tmp_path / ("ct" + suffix)

    segio.writeVolumeToFile(volume_node, str(path))

    written = sitk.ReadImage(str(path))
    assert written.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(image))
    assert_same_grid(written, image, tolerance_for(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


def test_writing_leaves_the_node_storage_node_alone(scene, tmp_path):
    volume_node = volume_node_from_image(scene, ct_image())
    volume_node.AddDefaultStorageNode()
    volume_node.GetStorageNode().SetFileName(str(tmp_path / "scene" / "CT.nrrd"))

    segio.writeVolumeToFile(volume_node, str(tmp_path / "for-core.nrrd"))

    assert volume_node.GetStorageNode().GetFileName() == str(tmp_path / "scene" / "CT.nrrd")
    assert scene.GetNumberOfNodesByClass("vtkMRMLVolumeArchetypeStorageNode") == 1


def test_nrrd_is_written_uncompressed_for_speed(scene, tmp_path):
    image = ct_image(size=(40, 30, 10))
    path = tmp_path / "ct.nrrd"

    segio.writeVolumeToFile(volume_node_from_image(scene, image), str(path))

    header = path.read_bytes()[:1000].split(b"\n\n")[0]
    assert b"encoding: raw" in header
    assert path.stat().st_size >= image.GetNumberOfPixels() * 2


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_volume_file_loads_on_its_exact_grid(scene, tmp_path, geometry, suffix):
    image = ct_image(geometry)
    path = tmp_path / ("ct" + suffix)
    sitk.WriteImage(image, str(path))

    volume_node = segio.loadVolumeFromFile(scene, str(path))

    assert volume_node.IsA("vtkMRMLScalarVolumeNode") and not volume_node.IsA("vtkMRMLLabelMapVolumeNode")
    assert volume_node.GetName() == "ct"
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume_node), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(node_ijk_to_ras(volume_node), ijk_to_ras(image), atol=tolerance_for(path))
    assert volume_node.GetDisplayNode() is not None
    assert volume_node.GetStorageNode() is None  # saving the scene must not overwrite the source file


def test_label_file_loads_as_labelmap_node_with_its_values(scene, tmp_path):
    image = ct_image()
    labels = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)
    labels[2:4, 3:6, 4:9] = 7
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    path = tmp_path / "draft.nii.gz"
    sitk.WriteImage(label_image, str(path))
    sitk.WriteImage(image, str(tmp_path / "image.nii.gz"))  # a sibling that must not be read as a series

    label_node = segio.loadVolumeFromFile(scene, str(path), name="Draft", labelmap=True)

    assert label_node.IsA("vtkMRMLLabelMapVolumeNode")
    assert label_node.GetName() == "Draft"
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(label_node), labels)


def test_missing_file_raises_and_adds_no_node(scene, tmp_path):
    with pytest.raises(FileNotFoundError):
        segio.loadVolumeFromFile(scene, str(tmp_path / "absent.nrrd"))
    assert scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == 0


def test_unreadable_file_raises_and_adds_no_node(scene, tmp_path):
    path = tmp_path / "broken.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\n\n")  # header without data

    with pytest.raises(IOError):
        segio.loadVolumeFromFile(scene, str(path))
    assert scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == 0
