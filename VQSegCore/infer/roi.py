"""Regions of interest: a box given in voxel indices or in physical LPS / RAS millimetres → an index box.

    box = IndexBox.from_request(image, RoiRequest("ras", (x0, y0, z0), (x1, y1, z1)))
    sub = box.extract(image)                  # a SimpleITK view with the right origin
    full[box.numpy_slices] = result_array     # paste back into a full-size [z, y, x] array

Physical boxes are two opposite corners. Slicer shows RAS, DICOM and ITK use LPS (x and y
negated); the caller says which, so no sign is guessed. The voxels kept are those whose centres
lie inside the box (after mapping its eight corners into index space, for oblique images the
index-space bounding box). Index boxes give the first and last voxel index of each axis, both
inclusive, in SimpleITK (i, j, k) order. A box partly outside the image is clipped; one entirely
outside is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from VQSegCore.errors import InputError

SYSTEMS = ("ijk", "lps", "ras")
# A voxel centre this close (in voxels) to a box face counts as inside (float noise in corners).
INDEX_SLACK = 1e-6


@dataclass(frozen=True)
class RoiRequest:
    system: str  # "ijk" | "lps" | "ras"
    first: tuple[float, float, float]  # a corner (ijk: first voxel index)
    second: tuple[float, float, float]  # the opposite corner (ijk: last voxel index, inclusive)

    def __post_init__(self) -> None:
        if self.system not in SYSTEMS:
            raise ValueError(f"ROI system must be one of {SYSTEMS}, got {self.system!r}")
        if len(self.first) != 3 or len(self.second) != 3 or not all(map(math.isfinite, (*self.first, *self.second))):
            raise InputError("an ROI needs six finite numbers: two opposite corners (x y z x y z)", "e.g. --roi-ras -50 20 -200 10 80 -150")


@dataclass(frozen=True)
class IndexBox:
    """A half-open voxel box [start, stop) per axis in SimpleITK (i, j, k) order."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def size(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @property
    def voxels(self) -> int:
        return int(np.prod(self.size))

    @property
    def numpy_slices(self) -> tuple[slice, slice, slice]:
        """Slices of a [z, y, x] array."""
        return tuple(slice(a, b) for a, b in zip(reversed(self.start), reversed(self.stop)))

    def extract(self, image: sitk.Image) -> sitk.Image:
        return image[self.start[0] : self.stop[0], self.start[1] : self.stop[1], self.start[2] : self.stop[2]]

    def to_dict(self) -> dict:
        return {"start_ijk": list(self.start), "stop_ijk": list(self.stop)}

    @classmethod
    def whole(cls, image: sitk.Image) -> "IndexBox":
        return cls((0, 0, 0), tuple(image.GetSize()))

    @classmethod
    def from_request(cls, image: sitk.Image, roi: RoiRequest) -> "IndexBox":
        size = np.asarray(image.GetSize())
        if not np.all(np.isfinite([*roi.first, *roi.second])):
            raise InputError(f"the ROI corners {list(roi.first)} and {list(roi.second)} must be finite numbers", "give six finite coordinates")
        if roi.system == "ijk":
            first, second = np.asarray(roi.first, dtype=float), np.asarray(roi.second, dtype=float)
            if not (np.all(first == np.round(first)) and np.all(second == np.round(second))):
                raise InputError("voxel-index ROI corners must be whole numbers", "give first and last voxel index per axis")
            low, high = np.minimum(first, second), np.maximum(first, second) + 1
        else:
            corners = _physical_corners(roi)
            index = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in c)) for c in corners])
            low = np.ceil(index.min(axis=0) - INDEX_SLACK)
            high = np.floor(index.max(axis=0) + INDEX_SLACK) + 1
        start = np.clip(low, 0, size).astype(int)
        stop = np.clip(high, 0, size).astype(int)
        if np.any(stop <= start) and roi.system != "ijk" and _overlaps(index, size):
            raise InputError(
                f"the ROI ({roi.system.upper()} {list(roi.first)} to {list(roi.second)}) lies inside the image but holds no voxel "
                f"centre: it is thinner than a voxel ({_spacing_text(image)}) along at least one axis",
                "give a box at least one voxel wide along every axis",
            )
        if np.any(stop <= start):
            raise InputError(
                f"the ROI ({roi.system.upper()} {list(roi.first)} to {list(roi.second)}) lies outside the image "
                f"(voxel indices 0..{(size - 1).tolist()}, {_extent_text(image)})",
                "check the coordinate system (RAS as Slicer shows it, LPS as DICOM) and the corners",
            )
        return cls(tuple(int(v) for v in start), tuple(int(v) for v in stop))


def _overlaps(index: np.ndarray, size: np.ndarray) -> bool:
    """Whether the corners' index-space bounding box meets the image's extent (voxel edges at -0.5 and size - 0.5)."""
    return bool(np.all(index.max(axis=0) >= -0.5) and np.all(index.min(axis=0) <= size - 0.5))


def _spacing_text(image: sitk.Image) -> str:
    return "spacing " + " x ".join(f"{s:g}" for s in image.GetSpacing()) + " mm"


def _physical_corners(roi: RoiRequest) -> np.ndarray:
    first, second = np.asarray(roi.first, dtype=float), np.asarray(roi.second, dtype=float)
    if roi.system == "ras":  # RAS → LPS: negate x and y
        flip = np.array([-1.0, -1.0, 1.0])
        first, second = first * flip, second * flip
    return np.array([[a, b, c] for a in (first[0], second[0]) for b in (first[1], second[1]) for c in (first[2], second[2])])


def _extent_text(image: sitk.Image) -> str:
    size = image.GetSize()
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint((a, b, c))
                        for a in (-0.5, size[0] - 0.5) for b in (-0.5, size[1] - 0.5) for c in (-0.5, size[2] - 0.5)])
    low, high = corners.min(axis=0), corners.max(axis=0)
    return "LPS extent " + ", ".join(f"{axis} {lo:.1f}..{hi:.1f} mm" for axis, lo, hi in zip("xyz", low, high))
