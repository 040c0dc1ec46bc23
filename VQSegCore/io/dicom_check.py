"""Check a DICOM series' slices before they are stacked into a volume.

    problem = series_problem(files)    # None, or what makes the stack not a uniform volume

ITK stacks any set of slices into a volume with one slice spacing (taken from the first two
positions) and only warns on stderr, so a series with a duplicate slice, a gap, slices of
different sizes or orientations, or a truncated slice file would become a volume with a wrong
spacing or missing anatomy. Each slice's header is read (not its pixels) and the slice positions,
projected on the slice normal, must be distinct and evenly spaced.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# Relative spread of slice distances still called uniform (scanners round positions to ~0.01 mm).
SPACING_RTOL = 0.01
SPACING_ATOL_MM = 0.01
ORIENTATION_ATOL = 1e-4
PIXEL_DATA = 0x7FE00010
_TAGS = ["ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PixelData"]


def series_problem(files: list[str] | tuple[str, ...]) -> str | None:
    """None when the slices make a uniform volume; otherwise a sentence naming the fault."""
    import pydicom  # here, not at the top: reading NIfTI or NRRD must not need it
    from pydicom.errors import InvalidDicomError

    slices = []
    for file in files:
        try:
            # force: GDCM reads slices without the 128-byte preamble too, and found them in the series
            header = pydicom.dcmread(file, defer_size=256, specific_tags=_TAGS, force=True)
            rows, columns = int(header.Rows), int(header.Columns)
            problem = _pixel_data_problem(header, file, rows, columns)
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError, KeyError) as error:
            return f"the slice file {Path(file).name} cannot be read ({error or type(error).__name__})"
        if problem:
            return f"the slice file {Path(file).name} {problem}"
        slices.append(((rows, columns), _numbers(header, "ImagePositionPatient", 3), _numbers(header, "ImageOrientationPatient", 6)))
    sizes = {size for size, _, _ in slices}
    if len(sizes) > 1:
        shown = ", ".join(f"{columns}x{rows}" for rows, columns in sorted(sizes))
        return f"the slices have different sizes ({shown} pixels)"
    if len(slices) < 2 or any(position is None or orientation is None for _, position, orientation in slices):
        return None  # nothing to compare (a single slice, or positions absent: ITK falls back to instance order)
    orientations = np.array([orientation for _, _, orientation in slices])
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_ATOL:
        return "the slices have different orientations (ImageOrientationPatient)"
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    distances = np.sort(np.array([position for _, position, _ in slices]) @ normal)
    steps = np.diff(distances)
    step = float(np.median(steps))
    if steps.min() <= SPACING_ATOL_MM:
        where = float(distances[int(np.argmin(steps))])
        return f"two or more slices lie at the same position ({where:.2f} mm along the slice normal)"
    if np.abs(steps - step).max() > SPACING_RTOL * step + SPACING_ATOL_MM:
        return (f"the slices are not evenly spaced: distances between neighbours range from {steps.min():.3g} to "
                f"{steps.max():.3g} mm (a gap, or slices missing)")
    return None


def _numbers(header, keyword: str, count: int) -> list[float] | None:
    """The tag's `count` numbers, or None when it is absent or malformed."""
    try:
        values = [float(v) for v in header.get(keyword, None) or []]
    except (TypeError, ValueError):
        return None
    return values if len(values) == count and all(np.isfinite(values)) else None


def _pixel_data_problem(header, file: str, rows: int, columns: int) -> str | None:
    """What is wrong with the slice's pixel data, judged from the raw element without reading its value."""
    try:
        element = header.get_item(PIXEL_DATA, keep_deferred=True)  # pydicom >= 3: the value stays on disk
    except TypeError:
        element = header.get_item(PIXEL_DATA)  # pydicom 2 (Slicer 5.10) reads a deferred value here
    if element is None:
        return "holds no pixel data"
    length = getattr(element, "length", None)
    if getattr(element, "is_undefined_length", False) or length == 0xFFFFFFFF:
        return None  # encapsulated (compressed): its length is not known up front
    expected = rows * columns * int(header.get("SamplesPerPixel", 1) or 1) * int(header.get("BitsAllocated", 16) or 16) // 8
    if getattr(element, "value_tell", None) is not None and length is not None:  # a raw element: compare with the file's size
        present = min(length, os.path.getsize(file) - element.value_tell)
    else:
        present = len(element.value or b"")
    if present < expected:
        return f"is truncated: {present} bytes of pixel data where {columns}x{rows} pixels need {expected}"
    return None
