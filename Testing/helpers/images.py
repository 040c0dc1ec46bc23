"""Small images with the geometries scanners produce, and CT DICOM series written from them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


# Geometries a real scanner produces: identity, RAS-flipped (negative axes), oblique gantry tilt,
# strongly anisotropic thick slices, and everything at once.
GEOMETRIES = {
    "identity": dict(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=np.eye(3)),
    "negative_axes": dict(spacing=(0.78125, 0.78125, 2.5), origin=(195.5, 210.25, -310.0), direction=np.diag([-1.0, -1.0, 1.0])),
    "oblique": dict(spacing=(0.7, 0.9, 1.25), origin=(-12.345678, 33.3, -250.125), direction=rotation("z", 17) @ rotation("x", -23)),
    "anisotropic_flipped_z": dict(spacing=(0.6, 0.6, 5.0), origin=(10.0, -20.0, 400.0), direction=np.diag([1.0, 1.0, -1.0])),
    "oblique_negative": dict(spacing=(1.3, 0.55, 3.0), origin=(-1.5e2, 7.25, 88.0), direction=rotation("y", 31) @ np.diag([-1.0, 1.0, -1.0])),
}


def make_image(geometry: dict, size=(11, 9, 7), dtype=np.int16, seed: int = 0) -> sitk.Image:
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1500, size=tuple(reversed(size))).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(tuple(np.asarray(geometry["direction"], dtype=float).ravel()))
    return image


def write_dicom_series(image: sitk.Image, folder: Path, series_uid: str, description: str = "CT") -> list[Path]:
    """Write a 3D int16 image as a CT DICOM series (one file per slice) with consistent geometry tags."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    paths = []
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0052": f"{study_uid}.9",  # Frame of Reference UID, as every scanner writes it
            "0008|103e": description,
            "0010|0010": "Doe^Jane",
            "0010|0020": "PATIENT-123",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{p:.6f}" for p in position),
            "0020|0037": "\\".join(f"{d:.9f}" for d in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7])),
            "0018|0050": str(image.GetSpacing()[2]),
            "0028|0030": f"{image.GetSpacing()[1]}\\{image.GetSpacing()[0]}",
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        path = folder / f"{series_uid.rsplit('.', 1)[-1]}_{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_image)
        paths.append(path)
    return paths
