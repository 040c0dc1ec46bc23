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

    headers = []
    for file in files:
        try:
            header = pydicom.dcmread(file, defer_size=256, specific_tags=_TAGS)
        except (InvalidDicomError, OSError, EOFError, ValueError) as problem:
            return f"the slice file {Path(file).name} cannot be read ({problem})"
        headers.append((file, header))
    sizes = {(int(h.get("Rows", 0)), int(h.get("Columns", 0))) for _, h in headers}
    if len(sizes) > 1:
        shown = ", ".join(f"{columns}x{rows}" for rows, columns in sorted(sizes))
        return f"the slices have different sizes ({shown} pixels)"
    for file, header in headers:
        if (problem := _pixel_data_problem(header, file)):
            return f"the slice file {Path(file).name} {problem}"
    if len(headers) < 2 or any("ImagePositionPatient" not in h or "ImageOrientationPatient" not in h for _, h in headers):
        return None  # nothing to compare (a single slice, or positions absent: ITK falls back to instance order)
    orientations = np.array([[float(v) for v in h.ImageOrientationPatient] for _, h in headers])
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_ATOL:
        return "the slices have different orientations (ImageOrientationPatient)"
    row, column = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row, column)
    distances = np.sort(np.array([[float(v) for v in h.ImagePositionPatient] for _, h in headers]) @ normal)
    steps = np.diff(distances)
    step = float(np.median(steps))
    if steps.min() <= SPACING_ATOL_MM:
        where = float(distances[int(np.argmin(steps))])
        return f"two or more slices lie at the same position ({where:.2f} mm along the slice normal)"
    if np.abs(steps - step).max() > SPACING_RTOL * step + SPACING_ATOL_MM:
        return (f"the slices are not evenly spaced: distances between neighbours range from {steps.min():.3g} to "
                f"{steps.max():.3g} mm (a gap, or slices missing)")
    return None


def _pixel_data_problem(header, file: str) -> str | None:
    """What is wrong with the slice's pixel data, read from the raw element (its value stays on disk)."""
    element = header.get_item(PIXEL_DATA)
    if element is None:
        return "holds no pixel data"
    length = getattr(element, "length", None)
    if length is None or length == 0xFFFFFFFF:  # encapsulated (compressed): its length is not known up front
        return None
    expected = int(header.Rows) * int(header.Columns) * int(header.get("SamplesPerPixel", 1)) * int(header.get("BitsAllocated", 16)) // 8
    on_disk = os.path.getsize(file) - element.value_tell if getattr(element, "value_tell", None) is not None else length
    present = min(length, on_disk)
    if present < expected:
        return f"is truncated: {present} bytes of pixel data where {int(header.Columns)}x{int(header.Rows)} pixels need {expected}"
    return None
