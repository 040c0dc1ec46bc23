"""`vqseg inspect INPUT`: what VQSeg reads from an image — geometry, intensities, DICOM series choice."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VQSegCore.io import Geometry, read_volume
from VQSegCore.io.geometry import geometry_problems
from VQSegCore.io.nifti_check import nifti_header_problem


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "inspect",
        help="read an image (file or DICOM folder) and show its geometry and intensity range",
    )
    parser.add_argument("input", type=Path, help="NIfTI, NRRD, MetaImage file or DICOM series folder")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    context.reporter.progress("read", 0, 1)
    volume = read_volume(args.input, check_geometry=False)
    context.reporter.progress("read", 1, 1)
    for note in volume.notes:
        context.reporter.log(note, "warning" if "DICOM series" in note else "info")
    image = volume.image
    array = sitk.GetArrayViewFromImage(image)
    geometry = Geometry.of(image)
    problems = geometry_problems(image)
    if args.input.name.lower().endswith((".nii", ".nii.gz")) and (header := nifti_header_problem(args.input)):
        problems.insert(0, header)
    for problem in problems:
        context.reporter.log(f"{problem}: other commands refuse this image", "warning")
    return {
        "input": str(volume.path),
        "source": "dicom" if volume.dicom_series else "file",
        "dicom_files": len(volume.dicom_series.files) if volume.dicom_series else None,
        "pixel_type": image.GetPixelIDTypeAsString(),
        "size": list(geometry.size),
        "spacing_mm": list(geometry.spacing),
        "origin_mm": list(geometry.origin),
        "direction": list(geometry.direction),
        "orientation": sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(geometry.direction),
        "geometry_problems": problems,
        "intensity": {"min": float(array.min()), "max": float(array.max()), "mean": round(float(np.mean(array, dtype=np.float64)), 2)},
    }
