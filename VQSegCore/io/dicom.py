"""Find DICOM image series in a folder tree and read the largest one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

# A scan of a user's whole archive would be slow and surprising; say so instead.
_MAX_FOLDERS = 2000


@dataclass(frozen=True)
class DicomSeries:
    uid: str
    files: tuple[str, ...]  # sorted by GDCM into slice order


def find_series(folder: Path) -> list[DicomSeries]:
    """All image series under `folder` (its subfolders included), largest first."""
    found: dict[str, list[str]] = {}
    for visited, (current, _dirs, files) in enumerate(os.walk(folder)):
        if visited >= _MAX_FOLDERS:
            break
        if not files:
            continue
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(current) or ():
            names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(current, uid)
            found.setdefault(uid, []).extend(names)
    series = [DicomSeries(uid, tuple(files)) for uid, files in found.items()]
    return sorted(series, key=lambda s: len(s.files), reverse=True)


def series_containing(file: Path) -> DicomSeries | None:
    """The series in `file`'s folder that holds `file` (so a user may point at any one slice)."""
    target = os.path.realpath(file)
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(file.parent)) or ():
        names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(file.parent), uid)
        if any(os.path.realpath(name) == target for name in names):
            return DicomSeries(uid, tuple(names))
    return None


def read_series(series: DicomSeries) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    # Per-slice tags are not needed and loading them costs time on large series.
    reader.MetaDataDictionaryArrayUpdateOff()
    return reader.Execute()
