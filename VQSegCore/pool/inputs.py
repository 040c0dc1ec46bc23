"""Read and check everything a new case needs before the pool is touched.

    inputs = read_case_inputs("ct.nrrd", classes, label="corrected.nii.gz", draft="model.nii.gz")
    inputs.image, inputs.label, inputs.draft, inputs.source_name

Every problem (missing file, label on another grid, values outside the class table) raises
InputError here, so a bad `add` writes nothing at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VQSegCore.classes import ClassTable, unexpected_values
from VQSegCore.errors import InputError
from VQSegCore.io.read import read_label_map, read_volume
from VQSegCore.pool.privacy import anonymous_image, source_name_for


@dataclass
class CaseInputs:
    image: sitk.Image  # without metadata
    source_name: str
    classes: ClassTable  # the table the label values were checked against
    label: np.ndarray | None = None  # [z, y, x] uint8, on the image's grid
    draft: np.ndarray | None = None


def read_case_inputs(
    image_path: str | os.PathLike,
    classes: ClassTable,
    label: str | os.PathLike | None = None,
    draft: str | os.PathLike | None = None,
    source_name: str | None = None,
) -> CaseInputs:
    for path, role in ((image_path, "image"), (label, "label"), (draft, "draft")):
        if path is not None and not Path(path).exists():
            raise InputError(f"{role} {path}: no such file or folder", "check the path")
    volume = read_volume(image_path)
    name = source_name_for(volume, source_name)
    return CaseInputs(
        image=anonymous_image(volume.image),
        source_name=name,
        classes=classes,
        label=read_label_values(label, volume.image, classes, "label") if label is not None else None,
        draft=read_label_values(draft, volume.image, classes, "draft") if draft is not None else None,
    )


def read_label_values(path: str | os.PathLike, reference: sitk.Image, classes: ClassTable, role: str) -> np.ndarray:
    """A label map on `reference`'s grid whose values all belong to `classes`, as a [z, y, x] uint8 array."""
    image = read_label_map(path, reference=reference, what=role, reference_name="the case's image",
                           hint="export the segmentation with the case's image as reference geometry")
    values = sitk.GetArrayFromImage(image)
    unknown = unexpected_values(values, classes)
    if unknown:
        known = ", ".join(f"{c.value} = {c.id}" for c in classes.classes)
        shown = ", ".join(map(str, unknown[:10])) + (", …" if len(unknown) > 10 else "")
        raise InputError(f"{role} {path}: label values {shown} are not in the pool's class table (0 = background, {known})",
                         "export the segmentation with the pool's classes, or create the pool with --classes")
    return values.astype(np.uint8)
