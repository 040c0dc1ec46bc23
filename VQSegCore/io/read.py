"""Read images as SimpleITK volumes, with one clear error (exit 2) for every kind of bad input."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VQSegCore.errors import InputError
from VQSegCore.io.dicom import DicomSeries, find_series, read_series, series_containing
from VQSegCore.io.dicom_check import series_problem
from VQSegCore.io.geometry import assert_same_geometry, geometry_problems
from VQSegCore.io.nifti_check import nifti_header_problem, nifti_problem

SUPPORTED_INPUTS = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr, .seg.nrrd), MetaImage (.mha, .mhd) or a DICOM series folder"

_INTEGER_PIXELS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
    sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64,
}


@dataclass
class Volume:
    """A 3D image as read, with where it came from."""

    image: sitk.Image
    path: Path
    dicom_series: DicomSeries | None = None  # set when read from DICOM (needed to write DICOM SEG)
    notes: list[str] = field(default_factory=list)  # things the user should be told (e.g. which series)


def read_volume(path: str | os.PathLike, *, check_geometry: bool = True) -> Volume:
    """Read a 3D scalar image from a file or a DICOM folder; raise InputError on anything unusable.

    `check_geometry=False` (for `vqseg inspect`) reads an image whose spacing or direction is
    implausible, so that it can be shown; every command that computes on an image keeps the check.
    """
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise InputError(f"{path}: a symbolic link to a missing file, or a loop of links", "fix the link or give the file itself")
        raise InputError(f"{path}: no such file or folder", "check the path")
    if path.is_dir():
        volume = _read_dicom_folder(path)
    elif path.suffix.lower() == ".dcm":
        volume = _read_dicom_file(path)
    else:
        volume = Volume(_read_file(path, check_geometry), path)
    _check_is_3d_scalar(volume.image, path)
    if check_geometry and (problems := geometry_problems(volume.image)):
        raise InputError(f"{path}: {'; '.join(problems)}",
                         "fix the image header (spacing and direction) in the program that wrote it, or re-export the image")
    return volume


def read_label_map(
    path: str | os.PathLike,
    reference: sitk.Image | None = None,
    what: str = "label map",
    **grid_check,
) -> sitk.Image:
    """Read an integer label map; when `reference` is given it must lie on the same voxel grid.

    `grid_check` passes `reference_name` and `hint` on to `assert_same_geometry` for the wording.
    """
    path = Path(path)
    image = read_volume(path).image
    if image.GetPixelID() not in _INTEGER_PIXELS:
        image = _integer_or_fail(image, path, what)
    if reference is not None:
        assert_same_geometry(reference, image, f"{what} {path}", **grid_check)
    return image


def _read_file(path: Path, check_geometry: bool = True) -> sitk.Image:
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied", "make the file readable")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty", "re-export or copy the image again")
    if path.name.lower().endswith((".nii", ".nii.gz")) and (problem := nifti_problem(path)):
        raise InputError(f"{path}: the file is truncated or corrupt: {problem}", "re-export or copy the image again")
    # ITK reads a NIfTI spacing (pixdim) of 0 or NaN as 1 mm, and a zero-length axis as one voxel: look first.
    if check_geometry and path.name.lower().endswith((".nii", ".nii.gz")) and (problem := nifti_header_problem(path)):
        raise InputError(f"{path}: {problem}", "fix the image header (dim and pixdim) in the program that wrote it, or re-export the image")
    with _unambiguous(path) as readable:
        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(readable))
            reader.ReadImageInformation()
        except RuntimeError as error:
            raise InputError(
                f"{path}: not a readable image ({_itk_reason(error)})",
                f"supported inputs: {SUPPORTED_INPUTS}",
            ) from error
        if check_geometry and (problem := _header_geometry_problem(reader)):
            raise InputError(f"{path}: {problem}", "fix the image header (spacing and direction) in the program that wrote it, or re-export the image")
        try:
            return reader.Execute()
        except RuntimeError as error:
            raise InputError(
                f"{path}: the image data cannot be read; the file is truncated or corrupt ({_itk_reason(error)})",
                "re-export or copy the image again",
            ) from error


@contextmanager
def _unambiguous(path: Path):
    """A name ITK reads `path` by, and nothing else.

    ITK's NIfTI reader, given x.nii.gz, reads the voxels of a sibling x.nii when one exists (the
    header of one file, the data of the other). Such a file is read through a link (or, where links
    are not allowed, a copy) of its own in a private folder.
    """
    if not path.name.lower().endswith(".nii.gz") or not path.with_name(path.name[:-3]).exists():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="vqseg-read-") as folder:
        alias = Path(folder) / "volume.nii.gz"
        try:
            os.symlink(path.resolve(), alias)
        except OSError:
            shutil.copyfile(path, alias)
        yield alias


def _read_dicom_folder(folder: Path) -> Volume:
    series = find_series(folder)
    if not series:
        raise InputError(f"{folder}: no DICOM image series found in this folder or its subfolders", f"supported inputs: {SUPPORTED_INPUTS}")
    chosen = series[0]
    notes = []
    if len(series) > 1:
        others = ", ".join(f"{len(s.files)} files" for s in series[1:])
        notes.append(f"{folder} holds {len(series)} DICOM series; using the largest ({len(chosen.files)} files, series {chosen.uid}); skipped: {others}")
    return Volume(_read_dicom_series(chosen, folder), folder, chosen, notes)


def _read_dicom_file(file: Path) -> Volume:
    series = series_containing(file)
    if series is None:
        return Volume(_read_file(file), file)
    return Volume(_read_dicom_series(series, file), file, series, [f"read the whole series of {file.name}: {len(series.files)} files"])


def _read_dicom_series(series: DicomSeries, where: Path) -> sitk.Image:
    if (problem := series_problem(series.files)):
        raise InputError(f"{where}: the DICOM series {series.uid} is not a uniform volume: {problem}",
                         "export the complete series again (every slice, once), or remove the odd files from the folder")
    try:
        return read_series(series)
    except RuntimeError as error:
        raise InputError(
            f"{where}: the DICOM series {series.uid} cannot be read ({_itk_reason(error)})",
            "check that the series is complete and uncompressed or in a transfer syntax GDCM reads",
        ) from error


def _check_is_3d_scalar(image: sitk.Image, path: Path) -> None:
    dimension = image.GetDimension()
    if dimension == 2:
        raise InputError(f"{path}: the image is 2D ({_size(image)}); a 3D volume is needed", "give the whole CT series or a 3D file")
    if dimension != 3:
        raise InputError(f"{path}: the image is {dimension}D ({_size(image)}); a 3D volume is needed", "extract one 3D volume (e.g. one time point) first")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path}: the image has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector data); a scalar CT volume is needed",
            "give a greyscale CT volume",
        )
    if min(image.GetSize()) < 1:
        raise InputError(f"{path}: the image has no voxels ({_size(image)})", "give a non-empty volume")


def _integer_or_fail(image: sitk.Image, path: Path, what: str) -> sitk.Image:
    array = sitk.GetArrayViewFromImage(image)
    if not ((array == array.round()).all()):
        raise InputError(f"{what} {path}: voxel values are not whole numbers; a label map holds class values 0, 1, 2, …", "export the segmentation as a label map")
    converted = sitk.Cast(image, sitk.sitkInt32)
    return converted


def _size(image: sitk.Image) -> str:
    return "×".join(str(s) for s in image.GetSize())


def _header_geometry_problem(reader: sitk.ImageFileReader) -> str | None:
    """A zero or invalid spacing, or a singular direction, as the header states them (ITK would fail
    on them later with a message about a corrupt file)."""
    if reader.GetDimension() != 3:
        return None  # 2D and 4D images are refused as such, with that reason, once read
    spacing = np.asarray(reader.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        return f"the header's voxel spacing {tuple(float(s) for s in spacing)} has a zero, negative or invalid value"
    dimension = reader.GetDimension()
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(dimension, dimension)
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
        return "the header's direction matrix is singular (two axes point the same way, or one is zero)"
    return None


def _itk_reason(error: RuntimeError) -> str:
    """The last meaningful line of an ITK exception, without file/line noise."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and "No such file or directory" not in line]
    # NRRD's reader ends "Error reading X:" and puts the cause in the teem lines after it; the last is the most specific.
    teem = [line for line in lines if line.startswith("[nrrd]")]
    if teem:
        return teem[-1].split(":", 1)[-1].strip()
    for line in reversed(lines):
        if "itk::ERROR" in line or "Description:" in line:
            return line.split(":", 1)[-1].strip() if "Description:" in line else line
    return lines[-1] if lines else "unknown reason"
