"""Every written label map lies exactly on the reference image's grid, in every format."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from slicerio.segmentation import read_segmentation

from helpers.images import GEOMETRIES, make_image, write_dicom_series
from VQSegCore.classes import LUNG_TUMOUR, ClassTable, SegmentClass
from VQSegCore.errors import InputError
from VQSegCore.io import LABEL_MAP_SUFFIXES, Geometry, label_map_image, read_label_map, read_volume, write_label_map

INPUT_SUFFIXES = (".nii.gz", ".nrrd", ".mha")


def _family(suffix: str) -> str:
    return {".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".seg.nrrd": "nrrd", ".mha": "meta"}[suffix]


def _axis_aligned(image: sitk.Image) -> bool:
    return set(np.round(image.GetDirection(), 12)) <= {0.0, 1.0, -1.0}


def _assert_geometry(actual: sitk.Image, expected: sitk.Image, tolerance: float) -> None:
    assert actual.GetSize() == expected.GetSize()
    for name in ("GetSpacing", "GetOrigin", "GetDirection"):
        got, want = np.array(getattr(actual, name)()), np.array(getattr(expected, name)())
        if tolerance == 0:
            assert tuple(got) == tuple(want), name  # bit for bit
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=tolerance, err_msg=name)


@pytest.mark.parametrize("output_suffix", LABEL_MAP_SUFFIXES)
@pytest.mark.parametrize("input_suffix", INPUT_SUFFIXES)
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_label_map_round_trip_keeps_geometry_and_voxels(tmp_path, geometry, input_suffix, output_suffix):
    source = tmp_path / f"image{input_suffix}"
    sitk.WriteImage(make_image(GEOMETRIES[geometry]), str(source))
    reference = read_volume(source).image
    labels = (sitk.GetArrayFromImage(reference) > 700).astype(np.uint8)
    labels[0, 0, 0] = 1  # the corner voxel pins down orientation: a flipped axis would move it

    written = write_label_map(labels, reference, tmp_path / f"out{output_suffix}", LUNG_TUMOUR)
    back = sitk.ReadImage(str(written))

    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)
    if _family(output_suffix) == "nifti":
        # NIfTI holds geometry in float32 fields and an oblique direction as a quaternion, so even
        # NIfTI → NIfTI can differ in the last bits (~1e-10); axis-aligned NIfTI is exact (real-CT test).
        tolerance = 1e-4
    elif _family(output_suffix) == _family(input_suffix) and _axis_aligned(reference):
        tolerance = 0.0  # same header precision on both sides: exactly the input's geometry
    else:
        # NRRD stores spacing × direction as one vector per axis; splitting it again on reading
        # an oblique grid can move the last bit (0.9 → 0.9000000000000001).
        tolerance = 1e-9
    _assert_geometry(back, reference, tolerance)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_label_map_image_copies_reference_geometry_bit_for_bit():
    reference = make_image(GEOMETRIES["oblique_negative"])
    image = label_map_image(np.zeros(tuple(reversed(reference.GetSize())), np.uint8), reference)
    _assert_geometry(image, reference, 0.0)
    assert image.GetPixelID() == sitk.sitkUInt8


def test_label_map_uses_uint16_only_when_values_need_it():
    reference = make_image(GEOMETRIES["identity"])
    labels = np.zeros(tuple(reversed(reference.GetSize())), np.int64)
    labels[0, 0, 0] = 300
    assert label_map_image(labels, reference).GetPixelID() == sitk.sitkUInt16


def test_label_map_of_wrong_shape_is_refused():
    reference = make_image(GEOMETRIES["identity"], size=(11, 9, 7))
    with pytest.raises(ValueError, match="does not match"):
        label_map_image(np.zeros((7, 11, 9), np.uint8), reference)


def test_unsupported_output_suffix_is_an_input_error(tmp_path):
    reference = make_image(GEOMETRIES["identity"])
    with pytest.raises(InputError, match="suffix"):
        write_label_map(np.zeros(tuple(reversed(reference.GetSize())), np.uint8), reference, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_seg_nrrd_carries_named_coloured_segments_with_terminology(tmp_path):
    reference = make_image(GEOMETRIES["oblique"], size=(12, 10, 8))
    classes = ClassTable(
        (
            LUNG_TUMOUR.classes[0],
            SegmentClass(value=2, id="lymph_node", name="Lymph node", color=(0.2, 0.6, 0.9)),
        )
    )
    labels = np.zeros(tuple(reversed(reference.GetSize())), np.uint8)
    labels[2:4, 3:6, 1:3] = 1
    labels[5, 7, 9] = 2
    path = write_label_map(labels, reference, tmp_path / "out.seg.nrrd", classes)

    segmentation = read_segmentation(str(path))
    segments = {s["id"]: s for s in segmentation["segments"]}
    assert list(segments) == ["lung_tumour", "lymph_node"]
    tumour = segments["lung_tumour"]
    assert tumour["name"] == "Lung tumour" and tumour["labelValue"] == 1
    np.testing.assert_allclose(tumour["color"], LUNG_TUMOUR.classes[0].color, atol=1e-6)
    assert tumour["terminology"]["type"] == ["SCT", "4147007", "Mass"]
    assert tumour["terminology"]["anatomicRegion"] == ["SCT", "39607008", "Lung"]
    assert segments["lymph_node"]["labelValue"] == 2
    # slicerio indexes voxels [i, j, k]: the single class-2 voxel sits at x=9, y=7, z=5.
    assert segmentation["voxels"][9, 7, 5] == 2
    np.testing.assert_allclose(np.asarray(segmentation["ijkToLPS"])[:3, 3], reference.GetOrigin(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_label_map(path, reference)), labels)


def test_seg_nrrd_refuses_values_missing_from_class_table(tmp_path):
    reference = make_image(GEOMETRIES["identity"])
    labels = np.zeros(tuple(reversed(reference.GetSize())), np.uint8)
    labels[1, 1, 1] = 5
    with pytest.raises(ValueError, match=r"\[5\]"):
        write_label_map(labels, reference, tmp_path / "out.seg.nrrd", LUNG_TUMOUR)
    assert list(tmp_path.iterdir()) == []


def test_real_ct_label_round_trip_is_exact(tmp_path, real_ct_path):
    reference = read_volume(real_ct_path).image
    assert reference.GetDirection() != (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)  # scanner geometry, not identity
    labels = (sitk.GetArrayFromImage(reference) > 200).astype(np.uint8)
    for suffix in LABEL_MAP_SUFFIXES:
        back = sitk.ReadImage(str(write_label_map(labels, reference, tmp_path / f"label{suffix}", LUNG_TUMOUR)))
        _assert_geometry(back, reference, 0.0)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)


def test_label_map_on_another_grid_is_refused(tmp_path):
    reference = make_image(GEOMETRIES["oblique"])
    shifted = make_image({**GEOMETRIES["oblique"], "origin": (0.0, 0.0, 0.0)})
    sitk.WriteImage(sitk.Cast(shifted > 0, sitk.sitkUInt8), str(tmp_path / "label.nrrd"))
    with pytest.raises(InputError, match="origin"):
        read_label_map(tmp_path / "label.nrrd", reference)


def test_label_map_with_fractional_values_is_refused(tmp_path):
    reference = make_image(GEOMETRIES["identity"])
    probabilities = sitk.Cast(reference, sitk.sitkFloat32) / 3000.0
    sitk.WriteImage(probabilities, str(tmp_path / "soft.nrrd"))
    with pytest.raises(InputError, match="whole numbers"):
        read_label_map(tmp_path / "soft.nrrd", reference)


@pytest.mark.parametrize("geometry", ["negative_axes", "oblique"])
def test_dicom_series_folder_reads_with_scanner_geometry(tmp_path, geometry):
    image = make_image(GEOMETRIES[geometry], size=(16, 12, 6))
    write_dicom_series(image, tmp_path / "series", "1.2.826.0.1.3680043.8.498.100")
    volume = read_volume(tmp_path / "series")
    assert volume.dicom_series is not None and len(volume.dicom_series.files) == 6
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), sitk.GetArrayFromImage(image))
    _assert_geometry(volume.image, image, 1e-5)  # DICOM stores positions as decimal strings


def test_dicom_folder_with_several_series_uses_the_largest_and_says_so(tmp_path):
    small = make_image(GEOMETRIES["identity"], size=(8, 8, 3), seed=1)
    large = make_image(GEOMETRIES["negative_axes"], size=(8, 8, 7), seed=2)
    write_dicom_series(small, tmp_path / "study" / "scout", "1.2.826.0.1.3680043.8.498.201")
    write_dicom_series(large, tmp_path / "study" / "axial", "1.2.826.0.1.3680043.8.498.202")
    volume = read_volume(tmp_path / "study")
    assert volume.image.GetSize() == (8, 8, 7)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), sitk.GetArrayFromImage(large))
    assert len(volume.notes) == 1 and "2 DICOM series" in volume.notes[0] and "7 files" in volume.notes[0]


def test_one_dicom_file_reads_its_whole_series(tmp_path):
    image = make_image(GEOMETRIES["identity"], size=(8, 8, 5))
    files = write_dicom_series(image, tmp_path / "series", "1.2.826.0.1.3680043.8.498.300")
    volume = read_volume(files[2])
    assert volume.image.GetSize() == (8, 8, 5)
    assert Geometry.of(volume.image).differences(Geometry.of(image), 1e-5) == []
