"""DICOM SEG export: voxels land on the right source slice, codes come from the class table, bad input writes nothing."""

from __future__ import annotations

from pathlib import Path

import highdicom
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from helpers.images import GEOMETRIES, make_image, write_dicom_series
from VQSegCore.classes import LUNG_TUMOUR_TERMINOLOGY, ClassTable, SegmentClass
from VQSegCore.errors import InputError
from VQSegCore.io.dicom import DicomSeries, find_series, read_series
from VQSegCore.io.dicom_seg import parse_terminology, write_dicom_seg
from VQSegCore.io.geometry import ijk_to_lps

SERIES_UID = "1.2.826.0.1.3680043.8.498.4242"
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"  # what helpers.images.write_dicom_series writes
FRAME_OF_REFERENCE_UID = "1.2.826.0.1.3680043.8.498.4243"
SIZE = (12, 10, 6)  # x, y, z all different, so a transposed mapping cannot fit

LYMPH_NODE_TERMINOLOGY = (
    "Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure"
    "~SCT^59441001^Lymph node~SCT^7771000^Left~Anatomic codes - DICOM master list~SCT^51185008^Thorax~SCT^24028007^Right"
)

# Label values with a gap (1, 2, 3 in the table; 2 never drawn): segment numbers follow table order.
CLASSES = ClassTable(
    (
        SegmentClass(1, "tumour", "Lung tumour", (0.86, 0.24, 0.24), LUNG_TUMOUR_TERMINOLOGY),
        SegmentClass(2, "never_drawn", "Never drawn", (0.1, 0.8, 0.1)),
        SegmentClass(3, "node", "Lymph node", (0.2, 0.3, 0.9), LYMPH_NODE_TERMINOLOGY),
    )
)


def _ct_series(folder: Path, geometry: str) -> tuple[DicomSeries, sitk.Image]:
    """A CT series as a scanner writes it, i.e. with the Frame of Reference UID the fixture omits."""
    for file in write_dicom_series(make_image(GEOMETRIES[geometry], SIZE), folder, SERIES_UID):
        dataset = pydicom.dcmread(file)
        dataset.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
        dataset.save_as(file)
    series = find_series(folder)[0]
    return series, read_series(series)


def _asymmetric_labels(reference: sitk.Image) -> sitk.Image:
    """Two classes in different corners of different slices: a flip or transpose in any axis moves them."""
    array = np.zeros(tuple(reversed(reference.GetSize())), dtype=np.uint8)
    array[1:3, 0:2, 0:5] = 1
    array[0, 0, 0] = 1
    array[4, 5:8, 7:11] = 3
    array[5, 9, 11] = 3
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(reference)
    return labels


def _source_uids(series: DicomSeries) -> list[str]:
    return [pydicom.dcmread(file, stop_before_pixels=True).SOPInstanceUID for file in series.files]


def _masks_by_source_slice(seg: highdicom.seg.Segmentation, series: DicomSeries) -> np.ndarray:
    """[slice, row, column, segment] masks, slice k being the one SEG frames reference as source file k."""
    return seg.get_pixels_by_source_instance(_source_uids(series), segment_numbers=[1, 2, 3])


def _masks_by_position(seg: highdicom.seg.Segmentation, reference: sitk.Image) -> np.ndarray:
    """The SEG's masks placed on the reference grid by physical position alone (independent of UIDs)."""
    volume = seg.get_volume(segment_numbers=[1, 2, 3])
    placed = np.zeros((*reversed(reference.GetSize()), 3), dtype=np.uint8)
    indices = np.indices(volume.spatial_shape).reshape(3, -1).T
    points = volume.map_indices_to_reference(indices)  # LPS mm
    lps_to_ijk = np.linalg.inv(ijk_to_lps(reference))
    ijk = points @ lps_to_ijk[:3, :3].T + lps_to_ijk[:3, 3]
    np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-3)  # every SEG voxel is a reference voxel
    i, j, k = np.round(ijk).astype(int).T
    placed[k, j, i] = volume.array.reshape(-1, 3)
    return placed


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_round_trip_matches_the_label_map_voxel_for_voxel(tmp_path, geometry):
    series, reference = _ct_series(tmp_path / "ct", geometry)
    labels = _asymmetric_labels(reference)
    path = write_dicom_seg(labels, series, CLASSES, tmp_path / "tumour.seg.dcm")

    seg = highdicom.seg.segread(path)
    expected = np.stack([sitk.GetArrayFromImage(labels) == value for value in CLASSES.values], axis=-1)
    assert seg.segment_numbers == [1, 2, 3]
    np.testing.assert_array_equal(_masks_by_source_slice(seg, series), expected)
    np.testing.assert_array_equal(_masks_by_position(seg, reference), expected)


def test_files_in_reverse_slice_order_still_pair_each_frame_with_its_own_slice(tmp_path):
    series, _ = _ct_series(tmp_path / "ct", "oblique")
    reversed_series = DicomSeries(series.uid, tuple(reversed(series.files)))
    reference = read_series(reversed_series)  # SimpleITK flips the slice axis to match
    labels = _asymmetric_labels(reference)
    path = write_dicom_seg(labels, reversed_series, CLASSES, tmp_path / "tumour.seg.dcm")

    seg = highdicom.seg.segread(path)
    expected = np.stack([sitk.GetArrayFromImage(labels) == value for value in CLASSES.values], axis=-1)
    np.testing.assert_array_equal(_masks_by_source_slice(seg, reversed_series), expected)


def test_an_empty_label_map_still_writes_every_segment(tmp_path):
    series, reference = _ct_series(tmp_path / "ct", "negative_axes")
    labels = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    labels.CopyInformation(reference)
    path = write_dicom_seg(labels, series, CLASSES, tmp_path / "empty.seg.dcm")

    seg = highdicom.seg.segread(path)
    assert seg.segment_numbers == [1, 2, 3]
    assert not _masks_by_source_slice(seg, series).any()


def test_seg_references_the_source_series_and_describes_the_class_table(tmp_path):
    series, reference = _ct_series(tmp_path / "ct", "oblique")
    path = write_dicom_seg(
        _asymmetric_labels(reference), series, CLASSES, tmp_path / "tumour.seg.dcm",
        algorithm_name="VQSeg-test", algorithm_version="9.8.7", series_description="Tumour SEG",
    )
    seg = highdicom.seg.segread(path)

    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == STUDY_UID
    assert seg.FrameOfReferenceUID == FRAME_OF_REFERENCE_UID
    assert seg.PatientName == "Doe^Jane" and seg.PatientID == "PATIENT-123"
    assert seg.SeriesInstanceUID not in {SERIES_UID, ""} and seg.SOPInstanceUID not in _source_uids(series)
    assert seg.InstanceNumber == 1 and seg.Manufacturer == "VQSeg" and seg.SeriesDescription == "Tumour SEG"
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == SERIES_UID
    assert sorted(item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence) == sorted(_source_uids(series))
    assert {uids[2] for uids in seg.get_source_image_uids()} == set(_source_uids(series))

    tumour, never_drawn, node = seg.SegmentSequence
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Lung tumour", "Never drawn", "Lymph node"]
    for segment in seg.SegmentSequence:
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("VQSeg-test", "9.8.7")
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"

    assert _code(tumour.SegmentedPropertyCategoryCodeSequence[0]) == ("SCT", "49755003")
    assert _code(tumour.SegmentedPropertyTypeCodeSequence[0]) == ("SCT", "4147007")
    assert _code(tumour.AnatomicRegionSequence[0]) == ("SCT", "39607008")
    assert _code(never_drawn.SegmentedPropertyCategoryCodeSequence[0]) == ("SCT", "85756007")  # generic fallback
    assert _code(never_drawn.SegmentedPropertyTypeCodeSequence[0]) == ("SCT", "85756007")
    assert "AnatomicRegionSequence" not in never_drawn
    node_type = node.SegmentedPropertyTypeCodeSequence[0]
    assert _code(node_type) == ("SCT", "59441001")
    assert _code(node_type.SegmentedPropertyTypeModifierCodeSequence[0]) == ("SCT", "7771000")
    assert _code(node.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0]) == ("SCT", "24028007")

    for segment, segment_class in zip(seg.SegmentSequence, CLASSES.classes):
        rgb = highdicom.color.CIELabColor.from_dicom_value(segment.RecommendedDisplayCIELabValue).to_rgb()
        np.testing.assert_allclose(np.array(rgb) / 255.0, segment_class.color, atol=0.01)


def _code(item: pydicom.Dataset) -> tuple[str, str]:
    return item.CodingSchemeDesignator, item.CodeValue


def test_terminology_parsing_keeps_meanings_and_falls_back_when_incomplete():
    parsed = parse_terminology(LUNG_TUMOUR_TERMINOLOGY)
    assert (parsed["category"].value, parsed["category"].meaning) == ("49755003", "Morphologically Altered Structure")
    assert (parsed["type"].value, parsed["type"].meaning) == ("4147007", "Mass")
    assert parsed["type_modifier"] is None and parsed["region_modifier"] is None
    for incomplete in ("", "ctx~^^~SCT^4147007^Mass", "ctx~SCT^49755003^Morphologically Altered Structure"):
        fallback = parse_terminology(incomplete)
        assert (fallback["category"].value, fallback["type"].value, fallback["region"]) == ("85756007", "85756007", None)


def _labels_with(reference: sitk.Image, value: int) -> sitk.Image:
    labels = _asymmetric_labels(reference)
    labels[0, 0, 0] = value
    return labels


def _other_grid(reference: sitk.Image) -> sitk.Image:
    labels = _asymmetric_labels(reference)
    labels.SetOrigin(tuple(o + 0.5 for o in reference.GetOrigin()))
    return labels


def _other_size(reference: sitk.Image) -> sitk.Image:
    return _asymmetric_labels(reference)[:, :, 1:]


def _float_labels(reference: sitk.Image) -> sitk.Image:
    return sitk.Cast(_asymmetric_labels(reference), sitk.sitkFloat32)


@pytest.mark.parametrize(
    "make_bad_labels, message",
    [
        (_other_grid, "not on the voxel grid"),
        (_other_size, "not on the voxel grid"),
        (lambda reference: _labels_with(reference, 7), "[7]"),
        (_float_labels, "not integers"),
    ],
    ids=["shifted_origin", "missing_slice", "unknown_value", "float_voxels"],
)
def test_bad_label_map_raises_input_error_and_writes_nothing(tmp_path, make_bad_labels, message):
    series, reference = _ct_series(tmp_path / "ct", "oblique")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        write_dicom_seg(make_bad_labels(reference), series, CLASSES, out / "tumour.seg.dcm")
    assert caught.value.hint
    assert list(out.iterdir()) == []


def test_series_without_frame_of_reference_raises_input_error_and_writes_nothing(tmp_path):
    series, reference = _ct_series(tmp_path / "ct", "identity")
    for file in series.files:
        dataset = pydicom.dcmread(file)
        del dataset.FrameOfReferenceUID
        dataset.save_as(file)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="Frame of Reference"):
        write_dicom_seg(_asymmetric_labels(reference), series, CLASSES, out / "tumour.seg.dcm")
    assert list(out.iterdir()) == []


def test_files_out_of_slice_order_raise_input_error_and_write_nothing(tmp_path):
    series, _ = _ct_series(tmp_path / "ct", "identity")
    files = list(series.files)
    files[2], files[3] = files[3], files[2]
    shuffled = DicomSeries(series.uid, tuple(files))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="slice 2 of the label map"):
        # Labels on the grid SimpleITK infers from the shuffled files, so only the order check can object.
        write_dicom_seg(_asymmetric_labels(read_series(shuffled)), shuffled, CLASSES, out / "tumour.seg.dcm")
    assert list(out.iterdir()) == []


def test_an_anonymised_series_without_patient_and_study_attributes_writes_a_seg(tmp_path):
    """Anonymisers delete Type 2 attributes such as PatientSex; the SEG then carries them empty."""
    series, reference = _ct_series(tmp_path / "ct", "identity")
    removed = ("PatientSex", "PatientBirthDate", "PatientName", "PatientID", "StudyDate", "StudyTime", "ReferringPhysicianName",
               "StudyID", "AccessionNumber")
    for file in series.files:
        dataset = pydicom.dcmread(file)
        for keyword in removed:
            if keyword in dataset:
                delattr(dataset, keyword)
        dataset.save_as(file)
    path = write_dicom_seg(_asymmetric_labels(reference), series, ClassTable.from_list([{"value": 1, "id": "tumour", "name": "Tumour"},
                                                                                           {"value": 3, "id": "node", "name": "Node"}]),
                           tmp_path / "seg.dcm")
    seg = pydicom.dcmread(path)
    assert all(seg.get(keyword) == "" for keyword in removed)
    assert int(seg.NumberOfFrames) > 0
