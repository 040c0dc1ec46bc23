"""The demo's synthetic chest CTs and the ROI a clinician would draw around each tumour."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VQSegCore.classes import LUNG_TUMOUR
from VQSegCore.infer.roi import RoiRequest
from VQSegCore.io.write import write_image, write_label_map
from VQSegCore.synth import PhantomSpec, make_chest_ct

# A small chest (the phantom's anatomy scales to the field of view): quick to resample to the
# model's 0.7 mm grid, to segment and to score, so the whole demo fits in minutes on a laptop CPU.
SIZE_XY, SLICES, SPACING_MM = (256, 256), 40, (1.0, 1.0, 2.5)
ROI_MARGIN_MM = 15.0


@dataclass(frozen=True)
class DemoCase:
    name: str
    image: Path
    label: Path  # the phantom's truth
    roi: RoiRequest  # the tumour's bounding box plus a margin, in LPS mm


def phantom_spec(seed: int) -> PhantomSpec:
    """A central tumour of 15-30 mm (drawn from the seed) in a 256 x 256 x 40 chest."""
    diameter = 15.0 + 15.0 * np.random.default_rng(seed).random()
    return PhantomSpec(size_xy=SIZE_XY, n_slices=SLICES, spacing=SPACING_MM, tumour_diameter_mm=round(diameter, 1), seed=seed)


def tumour_roi(label: sitk.Image, margin_mm: float = ROI_MARGIN_MM) -> RoiRequest:
    """The label's bounding box grown by `margin_mm`, as two LPS corners."""
    indices = np.argwhere(sitk.GetArrayViewFromImage(label) > 0)  # [z, y, x]
    if indices.size == 0:
        raise ValueError("the phantom has no tumour voxels")
    low, high = indices.min(axis=0)[::-1], indices.max(axis=0)[::-1]
    first = np.array(label.TransformContinuousIndexToPhysicalPoint([float(v) for v in low]))
    second = np.array(label.TransformContinuousIndexToPhysicalPoint([float(v) for v in high]))
    lower, upper = np.minimum(first, second) - margin_mm, np.maximum(first, second) + margin_mm
    return RoiRequest("lps", tuple(float(v) for v in lower), tuple(float(v) for v in upper))


def make_case(folder: Path, name: str, seed: int) -> DemoCase:
    phantom = make_chest_ct(phantom_spec(seed))
    image, label = folder / f"{name}.nii.gz", folder / f"{name}_truth.nii.gz"
    write_image(phantom.image, image)
    write_label_map(phantom.label, phantom.image, label, LUNG_TUMOUR)
    return DemoCase(name, image, label, tumour_roi(phantom.label))
