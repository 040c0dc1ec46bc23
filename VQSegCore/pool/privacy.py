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
_ID_TAGS = ("0010|0020", "0010|1000", "0008|0050")  # PatientID, OtherPatientIDs, AccessionNumber: short ones count too
_MIN_INSIDE = 4  # a whole value this long is looked for inside words too ("Doe_Jane" in "scanDoeJane2")
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


def patient_identifiers(volume: Volume) -> list[tuple[str, bool]]:
    """Identifying values (and their name parts) from the first DICOM file's headers; empty for other formats."""
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
            found.extend(_identifier_parts(reader.GetMetaData(tag), is_id=tag in _ID_TAGS))
    return found


def _first_dicom_file(volume: Volume) -> Path | None:
    if volume.dicom_series is not None and volume.dicom_series.files:
        return Path(volume.dicom_series.files[0])
    if volume.path.is_file() and volume.path.suffix.lower() == ".dcm":
        return volume.path
    return None


def _identifier_parts(value: str, is_id: bool = False) -> list[tuple[str, bool]]:
    """(text, whole value?) to look for: the whole value, and each name component of 3+ characters
    ("Doe^Jane" → "Doe^Jane", "Doe", "Jane"). Ids are kept whatever their length."""
    value = value.strip().strip("\x00").strip()
    if not value or (not is_id and len(_squeeze(value)) < 3):
        return []
    parts = [(value, True)] + [(part, False) for part in re.split(r"[\^\s,=\\]+", value) if len(part) >= 3 and part != value]
    return list(dict.fromkeys(parts))


def _mentions(text: str, identifiers: list[tuple[str, bool]]) -> bool:
    """Whether `text` holds an identifier: a name component or a short value as a whole word, a long
    whole value anywhere (separators ignored). Whole words keep "Ann" out of "scanner"."""
    words = set(re.findall(r"[a-z0-9]+", text.lower()))
    squeezed = _squeeze(text)
    for identifier, whole in identifiers:
        key = _squeeze(identifier)
        if not key:
            continue
        if key in words or (whole and len(key) >= _MIN_INSIDE and key in squeezed):
            return True
    return False


def _squeeze(text: str) -> str:
    """Lower case without separators, so "Doe_Jane", "doe jane" and "Doe^Jane" compare equal."""
    return re.sub(r"[\W_]+", "", text.lower())


def _base_name(volume: Volume) -> str:
    path = volume.path
    if volume.dicom_series is not None:
        # A DICOM folder (or one slice of it): the folder's name, never a tag such as SeriesDescription.
        return (path if path.is_dir() else path.parent).resolve().name or GENERIC_DICOM_NAME
    return path.name
