"""Files that must be refused: every kind of unusable input the issue names, made on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from helpers.images import GEOMETRIES, make_image


def _truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def written(tmp_path: Path, name: str, image: sitk.Image | None = None) -> Path:
    path = tmp_path / name
    sitk.WriteImage(image or make_image(GEOMETRIES["oblique"], size=(32, 32, 16)), str(path))
    return path


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name → (path, a phrase the error must contain)."""
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "fake.nii.gz").write_text("this is text pretending to be NIfTI\n")
    (tmp_path / "no_dicom").mkdir()
    (tmp_path / "no_dicom" / "readme.txt").write_text("no images here")
    four_d = sitk.JoinSeries([make_image(GEOMETRIES["identity"], size=(6, 5, 4), seed=s) for s in range(3)])
    rgb = sitk.Compose(*[sitk.Cast(make_image(GEOMETRIES["identity"], size=(6, 5, 4), seed=s), sitk.sitkUInt8) for s in range(3)])
    return {
        "missing": (tmp_path / "absent.nii.gz", "no such file"),
        "empty": (tmp_path / "empty.nii.gz", "empty"),
        "truncated_nii_gz": (_truncate(written(tmp_path, "cut.nii.gz"), 0.5), "truncated or corrupt"),
        "truncated_nii": (_truncate(written(tmp_path, "cut.nii"), 0.9), "truncated or corrupt"),
        "truncated_nrrd": (_truncate(written(tmp_path, "cut.nrrd"), 0.5), "truncated or corrupt"),
        "truncated_mha": (_truncate(written(tmp_path, "cut.mha"), 0.5), "truncated or corrupt"),
        "two_d": (written(tmp_path, "slice.nrrd", sitk.GetImageFromArray(np.zeros((8, 8), np.int16))), "2D"),
        "two_d_nifti": (written(tmp_path, "slice.nii.gz", sitk.GetImageFromArray(np.zeros((8, 8), np.int16))), "2D"),
        "four_d": (written(tmp_path, "series.nii.gz", four_d), "4D"),
        "colour": (written(tmp_path, "rgb.nrrd", rgb), "3 components"),
        "text_file": (tmp_path / "notes.txt", "not a readable image"),
        "text_named_nifti": (tmp_path / "fake.nii.gz", "not a readable image"),
        "dicom_folder_without_series": (tmp_path / "no_dicom", "no DICOM image series"),
    }


CASES = [
    "missing", "empty", "truncated_nii_gz", "truncated_nii", "truncated_nrrd", "truncated_mha", "two_d", "two_d_nifti",
    "four_d", "colour", "text_file", "text_named_nifti", "dicom_folder_without_series",
]
