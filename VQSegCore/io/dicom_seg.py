"""Write a label map as a DICOM Segmentation (SEG) object that references its source CT series.

One BINARY segment per class, in class-table order (segment number i is the table's i-th class,
whatever its label value), each named, coloured and coded from the class's Slicer terminology.

Usage::

    series = find_series(Path("patient/ct"))[0]
    labels = predict(...)  # a SimpleITK label map on exactly read_series(series)'s grid
    write_dicom_seg(labels, series, LUNG_TUMOUR, "tumour.seg.dcm", algorithm_version="1.0")
"""

from __future__ import annotations

import os
from pathlib import Path

import highdicom
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.sr.coding import Code

from VQSegCore import __version__
from VQSegCore.atomic import atomic_output, check_writable_folder
from VQSegCore.classes import ClassTable, SegmentClass, unexpected_values
from VQSegCore.errors import InputError
from VQSegCore.io.dicom import DicomSeries, read_series
from VQSegCore.io.geometry import assert_same_geometry

# SCT 85756007 "Tissue" is in both CID 7150 (categories) and CID 7151 (types); Slicer uses this pair
# for a segment without terminology.
GENERIC_CATEGORY = Code("85756007", "SCT", "Tissue")
GENERIC_TYPE = Code("85756007", "SCT", "Tissue")
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")  # CID 7162

_TYPE_2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "ReferringPhysicianName", "StudyID", "AccessionNumber")

# Keeps the SEG next to its source in viewers that sort series by number.
_SERIES_NUMBER_OFFSET = 1000

_GRID_HINT = "write the SEG for the label map predicted on this very series, or resample the label map onto it first"


def write_dicom_seg(
    labels: sitk.Image,
    series: DicomSeries,
    classes: ClassTable,
    path: str | os.PathLike,
    *,
    algorithm_name: str = "VQSeg",
    algorithm_version: str = "",
    series_description: str = "VQSeg segmentation",
) -> Path:
    """Write `labels` (0 = background, other values from `classes`) as a DICOM SEG at `path`.

    An empty `algorithm_version` becomes VQSegCore's version (DICOM requires a value).
    Raises InputError when the label map is not on the series' grid or holds unknown values.
    """
    path = Path(path)
    check_writable_folder(path)
    segment_numbers = _segment_number_array(labels, series, classes)
    sources = _read_source_headers(series)
    _check_slice_order(sources, labels)
    source = sources[0]

    algorithm = highdicom.AlgorithmIdentificationSequence(
        name=algorithm_name, family=ARTIFICIAL_INTELLIGENCE, version=algorithm_version or __version__
    )
    segmentation = highdicom.seg.Segmentation(
        source_images=sources,
        pixel_array=segment_numbers,
        segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            _segment_description(number, segment_class, algorithm)
            for number, segment_class in enumerate(classes.classes, start=1)
        ],
        series_instance_uid=highdicom.UID(),
        series_number=int(source.get("SeriesNumber") or 0) + _SERIES_NUMBER_OFFSET,
        sop_instance_uid=highdicom.UID(),
        instance_number=1,
        manufacturer="VQSeg",
        manufacturer_model_name="VQSeg",
        software_versions=__version__,
        device_serial_number="1",
        content_description=series_description[:64],  # LO holds 64 characters
        series_description=series_description[:64],
        # Empty frames are left out (the SEG stays small); a class without voxels keeps its segment
        # description, and an all-empty map keeps all frames, since a SEG needs at least one.
        omit_empty_frames=True,
    )
    with atomic_output(path) as temp:
        segmentation.save_as(temp)
    return path


def _segment_number_array(labels: sitk.Image, series: DicomSeries, classes: ClassTable) -> np.ndarray:
    """The label map as a [slice, row, column] array of segment numbers, after checking it fits."""
    assert_same_geometry(
        read_series(series), labels, "the label map", reference_name=f"DICOM series {series.uid}", hint=_GRID_HINT
    )
    array = sitk.GetArrayViewFromImage(labels)
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"the label map has {labels.GetPixelIDTypeAsString()} voxels, not integers", "save the label map with an integer pixel type")
    unknown = unexpected_values(array, classes)
    if unknown:
        raise InputError(
            f"the label map holds values {unknown} that are not in the class table {classes.values}",
            "use a class table that lists every label value, or relabel the map",
        )
    # Label values may have gaps (1, 3, ...) while segment numbers must run 1..n in table order.
    value_to_segment = np.zeros(classes.max_value + 1, dtype=np.uint8)
    for number, value in enumerate(classes.values, start=1):
        value_to_segment[value] = number
    # SimpleITK's [z, y, x] is DICOM's [slice, row, column]: slice k is series.files[k].
    return value_to_segment[array]


def _read_source_headers(series: DicomSeries) -> list[pydicom.Dataset]:
    """The slice headers in `series.files` order, which is the label map's slice order."""
    sources = [pydicom.dcmread(file, stop_before_pixels=True) for file in series.files]
    for source in sources:
        # highdicom copies this tag into the SEG verbatim (even over pixel measures passed to it), and
        # writers get it wrong (GDCM may write 1 for any series). Without it, highdicom measures the
        # spacing from the slice positions, which _check_slice_order has verified.
        source.pop("SpacingBetweenSlices", None)
        # Type 2 attributes (present, possibly empty) that highdicom copies into the SEG; anonymisers
        # often delete them, so absent ones are added empty, as the standard allows.
        for keyword in _TYPE_2_COPIED:
            if keyword not in source:
                setattr(source, keyword, "")
    if len(sources) == 1 and int(sources[0].get("NumberOfFrames") or 1) > 1:
        raise InputError(f"DICOM series {series.uid} is one multi-frame file", "export the series as single-frame (classic) CT slices")
    if any("FrameOfReferenceUID" not in source for source in sources):
        # A SEG places its frames in the source's frame of reference; without one it cannot.
        raise InputError(f"DICOM series {series.uid} has no Frame of Reference UID", "use the series as exported by the scanner or PACS")
    return sources


def _check_slice_order(sources: list[pydicom.Dataset], labels: sitk.Image) -> None:
    """Slice k of the label map must lie where source image k lies: highdicom pairs them by position in the list."""
    normal = np.asarray(labels.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    half_slice = 0.5 * labels.GetSpacing()[2]
    for k, source in enumerate(sources):
        expected = np.asarray(labels.TransformIndexToPhysicalPoint((0, 0, k)))
        offset = float(normal @ (np.asarray(source.ImagePositionPatient, dtype=float) - expected))
        if abs(offset) > half_slice:
            raise InputError(
                f"slice {k} of the label map lies {offset:.3g} mm from {source.filename}",
                "pass the series' files sorted by slice position, as find_series returns them",
            )


def _segment_description(
    number: int, segment_class: SegmentClass, algorithm: highdicom.AlgorithmIdentificationSequence
) -> highdicom.seg.SegmentDescription:
    terminology = parse_terminology(segment_class.terminology)
    description = highdicom.seg.SegmentDescription(
        segment_number=number,
        segment_label=segment_class.name,
        segmented_property_category=terminology["category"],
        segmented_property_type=terminology["type"],
        algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[terminology["region"]] if terminology["region"] else None,
        display_color=highdicom.color.CIELabColor.from_rgb(*(255.0 * c for c in segment_class.color)),
    )
    # highdicom has no argument for the modifiers; DICOM nests each in the item it modifies.
    if terminology["type_modifier"]:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [terminology["type_modifier"]]
    if terminology["region"] and terminology["region_modifier"]:
        description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [terminology["region_modifier"]]
    return description


def parse_terminology(terminology: str) -> dict[str, highdicom.sr.CodedConcept | None]:
    """Category, type, type modifier, region and region modifier codes of a Slicer terminology string.

    `context~category~type~typeModifier~anatomicContext~region~regionModifier`, codes as
    `scheme^value^meaning`. Without both a category and a type, the generic Tissue/Tissue pair is used.
    """
    fields = terminology.split("~") if terminology else []
    fields += [""] * (7 - len(fields))
    category, property_type = _code(fields[1]), _code(fields[2])
    if category is None or property_type is None:
        category, property_type = _coded(GENERIC_CATEGORY), _coded(GENERIC_TYPE)
    return {
        "category": category,
        "type": property_type,
        "type_modifier": _code(fields[3]),
        "region": _code(fields[5]),
        "region_modifier": _code(fields[6]),
    }


def _code(text: str) -> highdicom.sr.CodedConcept | None:
    """`SCT^4147007^Mass` as a coded concept; None for an empty or incomplete code such as `^^`."""
    parts = [part.strip() for part in text.split("^", 2)]
    if len(parts) != 3 or not all(parts):
        return None
    scheme, value, meaning = parts
    return highdicom.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _coded(code: Code) -> highdicom.sr.CodedConcept:
    return highdicom.sr.CodedConcept(value=code.value, scheme_designator=code.scheme_designator, meaning=code.meaning)
