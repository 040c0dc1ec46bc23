"""Image geometry: size, spacing, origin and direction, compared exactly or within a tolerance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from VQSegCore.errors import InputError


@dataclass(frozen=True)
class Geometry:
    size: tuple[int, ...]  # (x, y, z) voxels, SimpleITK order
    spacing: tuple[float, ...]  # mm
    origin: tuple[float, ...]  # mm, LPS
    direction: tuple[float, ...]  # row-major 3×3: column i is the physical direction of index axis i

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(
            size=tuple(image.GetSize()),
            spacing=tuple(image.GetSpacing()),
            origin=tuple(image.GetOrigin()),
            direction=tuple(image.GetDirection()),
        )

    def apply_to(self, image: sitk.Image) -> None:
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"size {image.GetSize()} differs from {self.size}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    def differences(self, other: "Geometry", tolerance: float = 0.0) -> list[str]:
        """Human-readable list of what differs; empty when the geometries agree."""
        found = []
        if self.size != other.size:
            found.append(f"size {other.size} ≠ {self.size}")
        for name in ("spacing", "origin", "direction"):
            mine, theirs = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if mine.shape != theirs.shape or not np.allclose(mine, theirs, rtol=0.0, atol=tolerance):
                found.append(f"{name} {_fmt(theirs)} ≠ {_fmt(mine)}")
        return found

    def to_dict(self) -> dict:
        return {"size": list(self.size), "spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction)}


def ijk_to_lps(image: sitk.Image) -> np.ndarray:
    """4×4 matrix from voxel index (i, j, k) to physical LPS millimetres."""
    dimension = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


# Geometry read from NIfTI passes through float32 header fields: allow that much, nothing more.
GEOMETRY_TOLERANCE_MM = 1e-4

# Voxel spacing a medical image can plausibly have (a micro-CT's 0.05 mm to a 20 mm scout). Outside it
# a header is broken, and the model grid would need an absurd amount of memory or time.
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 20.0
# How far D^T D may differ from the identity: float32 header round-trips stay far below it.
ORTHONORMAL_TOLERANCE = 1e-3


def geometry_problems(image: sitk.Image) -> list[str]:
    """What makes this image's geometry unusable: spacing outside MIN..MAX_SPACING_MM (or not a
    number), or a direction matrix that is not orthonormal. Empty when the geometry is sound."""
    found = []
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or spacing.min() < MIN_SPACING_MM or spacing.max() > MAX_SPACING_MM:
        found.append(f"voxel spacing {_fmt(spacing)} mm lies outside {MIN_SPACING_MM:g}–{MAX_SPACING_MM:g} mm")
    dimension = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)
    if not np.all(np.isfinite(direction)) or np.abs(direction.T @ direction - np.eye(dimension)).max() > ORTHONORMAL_TOLERANCE:
        found.append(f"the direction matrix {_fmt(direction.ravel())} is not orthonormal (its axes are not unit length and perpendicular)")
    return found


_LABEL_ON_IMAGE_HINT = "resample the label map onto the image grid (e.g. in Slicer: export the segmentation with the image as reference)"


def assert_same_geometry(
    reference: sitk.Image,
    other: sitk.Image,
    what: str,
    tolerance: float = GEOMETRY_TOLERANCE_MM,
    *,
    reference_name: str = "the image",
    hint: str = _LABEL_ON_IMAGE_HINT,
) -> None:
    """Raise InputError when `other` does not lie on `reference`'s voxel grid."""
    problems = Geometry.of(reference).differences(Geometry.of(other), tolerance)
    if problems:
        raise InputError(f"{what} is not on the voxel grid of {reference_name}: " + "; ".join(problems), hint)


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in np.ravel(values)) + ")"
