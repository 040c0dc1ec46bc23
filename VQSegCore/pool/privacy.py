"""Keep patient-identifying text out of the pool.

    source_name_for(volume, given=None)   # "series_0042" (a folder or file base name), never a DICOM name or id
    anonymous_image(volume.image)         # the same voxels and geometry, no metadata dictionary

The pool stores only voxels, geometry, generated case ids and a free-text source name. DICOM
headers are read here for one purpose: to make sure none of the patient's name, id or birth date
slips into that source name (a folder called after the patient, or the user typing it).
"""

from __future__ import annotations

import re
from pathlib import Path

import SimpleITK as sitk

from VQSegCore.errors import InputError
from VQSegCore.io.read import Volume

# The identifying text attributes of DICOM's basic de-identification profile (PS3.15 E.1) that hold
# free text a user might copy into a name: the patient's names, ids, birth date, address and phone;
# accession number and study id; institution, station and the physicians' and operators' names; dates.
_PATIENT_TAGS = (
    "0010|0010", "0010|0020", "0010|0030", "0010|1000", "0010|1001", "0010|1040", "0010|2154", "0010|1090",  # patient
    "0008|0050", "0020|0010",  # AccessionNumber, StudyID
    "0008|0080", "0008|0081", "0008|1010", "0008|1040",  # InstitutionName, -Address, StationName, InstitutionalDepartmentName
    "0008|0090", "0008|1050", "0008|1070", "0008|1060",  # referring, performing, operators', reading physicians
    "0008|0020", "0008|0021", "0008|0022", "0008|0023",  # study, series, acquisition, content dates
)
_MIN_IDENTIFIER = 4  # shorter values ("1", "CT") would match any name
GENERIC_DICOM_NAME = "DICOM series"
_MAX_SOURCE_NAME = 200


def source_name_for(volume: Volume, given: str | None = None) -> str:
    """The user's name for the case's source, or the input's base name; never patient data."""
    identifiers = patient_identifiers(volume)
    if given is not None:
        name = " ".join(given.split())[:_MAX_SOURCE_NAME]
        if _mentions(name, identifiers):
            raise InputError("--source-name contains identifying text from the DICOM headers (the patient's name, id or birth date, "
                             "an accession number, an institution, a physician or a date)",
                             "the pool must not hold patient-identifying text; give a neutral name such as 'site A, scan 3'")
        return name
    base = _base_name(volume)
    return GENERIC_DICOM_NAME if _mentions(base, identifiers) else base


def anonymous_image(image: sitk.Image) -> sitk.Image:
    """A copy without the metadata dictionary (readers may carry header fields into it)."""
    copy = sitk.Image(image)
    for key in copy.GetMetaDataKeys():
        copy.EraseMetaData(key)
    return copy


def patient_identifiers(volume: Volume) -> list[str]:
    """Patient name parts, id and birth date from the first DICOM file; empty for other formats."""
    first = _first_dicom_file(volume)
    if first is None:
        return []
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(first))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return []
    found = []
    for tag in _PATIENT_TAGS:
        if reader.HasMetaDataKey(tag):
            found.extend(_identifier_parts(reader.GetMetaData(tag)))
    return found


def _first_dicom_file(volume: Volume) -> Path | None:
    if volume.dicom_series is not None and volume.dicom_series.files:
        return Path(volume.dicom_series.files[0])
    if volume.path.is_file() and volume.path.suffix.lower() == ".dcm":
        return volume.path
    return None


def _identifier_parts(value: str) -> list[str]:
    # The whole value plus each name component ("Doe^Jane" → "Doe^Jane", "Doe", "Jane"); very short parts
    # would match everything, so they are left out.
    value = value.strip().strip("\x00").strip()
    if not value:
        return []
    parts = [value] + [part for part in re.split(r"[\^\s,=\\]+", value) if len(part) >= 3]
    return [part for part in dict.fromkeys(parts) if len(_squeeze(part)) >= _MIN_IDENTIFIER or part != value]


def _mentions(text: str, identifiers: list[str]) -> bool:
    squeezed = _squeeze(text)
    return any(_squeeze(identifier) and _squeeze(identifier) in squeezed for identifier in identifiers)


def _squeeze(text: str) -> str:
    """Lower case without separators, so "Doe_Jane", "doe jane" and "Doe^Jane" compare equal."""
    return re.sub(r"[\W_]+", "", text.lower())


def _base_name(volume: Volume) -> str:
    path = volume.path
    if volume.dicom_series is not None:
        # A DICOM folder (or one slice of it): the folder's name, never a tag such as SeriesDescription.
        return (path if path.is_dir() else path.parent).resolve().name or GENERIC_DICOM_NAME
    return path.name
