"""Write label maps and images atomically, on exactly the reference image's geometry.

Every file SimpleITK writes is read back and compared before it is renamed into place: ITK's NIfTI
writer does not report a full disk (it leaves a 0-byte file or a truncated gzip stream and returns),
so only a read-back tells a whole file from a broken one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VQSegCore.atomic import atomic_output, check_writable_folder, full_suffix
from VQSegCore.classes import ClassTable, SegmentClass
from VQSegCore.errors import InputError
from VQSegCore.io.seg_nrrd import write_seg_nrrd

LABEL_MAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def output_format(path: str | os.PathLike, kind: str = "label map") -> str:
    """The format named by the path's suffix, or InputError when a `kind` cannot be written so.

    Call it for every output before any work starts, so a bad path fails fast and writes nothing.
    """
    allowed = LABEL_MAP_SUFFIXES if kind == "label map" else IMAGE_SUFFIXES
    suffix = full_suffix(Path(path)).lower()
    if suffix not in allowed:
        raise InputError(f"{path}: cannot write {'an' if kind[0] in 'aeiou' else 'a'} {kind} with suffix {suffix or '(none)'!r}", f"use one of {', '.join(allowed)}")
    return suffix


def label_map_image(labels: np.ndarray | sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A label image with the reference's size, spacing, origin and direction (copied, not recomputed)."""
    array = sitk.GetArrayViewFromImage(labels) if isinstance(labels, sitk.Image) else np.asarray(labels)
    expected = tuple(reversed(reference.GetSize()))
    if array.shape != expected:
        raise ValueError(f"label array shape {array.shape} does not match the reference [z, y, x] shape {expected}")
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise ValueError("label values must lie in 0..65535")
    dtype = np.uint8 if not array.size or array.max() <= 255 else np.uint16
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=dtype))
    image.CopyInformation(reference)
    return image


def write_label_map(
    labels: np.ndarray | sitk.Image,
    reference: sitk.Image,
    path: str | os.PathLike,
    classes: ClassTable | None = None,
) -> Path:
    """Write `labels` ([z, y, x] array or image) as .nii.gz, .nii, .nrrd, .mha or Slicer .seg.nrrd.

    `.seg.nrrd` carries one named, coloured segment per class (with terminology); without a class
    table, segments are named after the label values present.
    """
    path = Path(path)
    suffix = output_format(path)
    check_writable_folder(path)
    image = label_map_image(labels, reference)
    with atomic_output(path) as temp:
        if suffix == ".seg.nrrd":
            write_seg_nrrd(image, temp, classes or _classes_for_values(image))
        else:
            write_verified(image, temp, compress=suffix != ".nii")
    return path


def write_image(image: sitk.Image, path: str | os.PathLike) -> Path:
    """Write any image (e.g. a CT volume) atomically in the format its suffix names."""
    path = Path(path)
    suffix = output_format(path, "image")
    check_writable_folder(path)
    with atomic_output(path) as temp:
        write_verified(image, temp, compress=suffix != ".nii")
    return path


def write_verified(image: sitk.Image, path: Path, compress: bool) -> None:
    """sitk.WriteImage, then read the file back: OSError (ENOSPC when the disk is full) unless it holds `image` exactly."""
    try:
        sitk.WriteImage(image, str(path), useCompression=compress)
    except RuntimeError as problem:  # ITK reports some write failures (e.g. MetaImage) as exceptions
        reason = (str(problem).strip().splitlines() or ["no message"])[-1]
        raise _write_failure(path, f"the image writer failed: {reason}") from problem
    expected = _pixel_digest(image)
    try:
        written = sitk.ReadImage(str(path))
    except RuntimeError:
        raise _write_failure(path, "the written file does not read back") from None
    same = written.GetSize() == image.GetSize() and written.GetNumberOfComponentsPerPixel() == image.GetNumberOfComponentsPerPixel() \
        and _pixel_digest(written) == expected
    del written
    if not same:
        raise _write_failure(path, "the written file does not read back whole")


def _pixel_digest(image: sitk.Image) -> str:
    return hashlib.blake2b(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)).data, digest_size=16).hexdigest()


def _write_failure(path: Path, what: str) -> OSError:
    """ENOSPC when the file system has (almost) no room left, else EIO naming what went wrong."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and free < 1 << 20:
        return OSError(errno.ENOSPC, "No space left on device", str(path))
    room = f"; {free / 2**20:.1f} MiB free" if free is not None else ""
    return OSError(errno.EIO, f"{what}{room}", str(path))


def _classes_for_values(image: sitk.Image) -> ClassTable:
    present = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v != 0)
    rng = np.random.default_rng(0)
    return ClassTable(
        tuple(SegmentClass(value=v, id=f"label_{v}", name=f"Label {v}", color=tuple(float(c) for c in rng.uniform(0.2, 1.0, 3))) for v in present or [1])
    )
