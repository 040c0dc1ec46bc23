"""Crop a CT before inference to where a lung tumour can be: the lungs, or at least the body.

    box, source = crop_box(image, "auto")     # ("lungs" | "body" | "whole image")

Body: the largest connected component above -500 HU. Lungs: air (below -400 HU) that is enclosed by
the body in its axial slice (outside air touches the slice border), in 3D components of at least
a tenth of the largest one (so bowel gas and small pockets do not count), with a generous margin:
a tumour lies in or against the lung, within the lungs' bounding box. Both are found on a volume
binned to about 3 mm voxels, then grown back to full resolution. "auto" uses the lung
box when lungs of at least 50 mL are found, else the body box, else the whole image.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from VQSegCore.infer.roi import IndexBox

CROP_MODES = ("auto", "lungs", "body", "none")
BODY_THRESHOLD_HU = -500.0
LUNG_THRESHOLD_HU = -400.0
BODY_MARGIN_MM = 10.0
LUNG_MARGIN_MM = (15.0, 15.0, 20.0)  # x, y, z
# A finding must reach this close to the lungs to count as theirs: a tumour against the pleura is
# soft tissue next to the air, not in it.
LUNG_FIELD_MARGIN_MM = 6.0
MIN_LUNG_ML = 50.0
SHRUNK_SPACING_MM = 3.0
# A "body" smaller than this fraction of the image is noise or a phantom without body: keep the whole image.
MIN_BODY_FRACTION = 0.01


_NOT_COMPUTED = object()


def crop_box(image: sitk.Image, mode: str = "auto", lungs=_NOT_COMPUTED) -> tuple[IndexBox, str]:
    """`lungs`: the result of `lung_mask(image)` when the caller has it already."""
    if mode not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")
    if mode in ("auto", "lungs"):
        box = lung_box(image, lungs=lungs)
        if box is not None:
            return box, "lungs"
    if mode in ("auto", "lungs", "body"):
        box = body_box(image)
        if box is not None:
            return box, "body"
    return IndexBox.whole(image), "whole image"


def body_box(image: sitk.Image, threshold_hu: float = BODY_THRESHOLD_HU, margin_mm: float = BODY_MARGIN_MM) -> IndexBox | None:
    small, factors = _shrunk(image)
    components, count = ndimage.label(sitk.GetArrayViewFromImage(small) > threshold_hu)
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    mask = components == int(np.argmax(sizes))
    if mask.sum() < MIN_BODY_FRACTION * mask.size:
        return None
    return _grown_box(mask, factors, image, (margin_mm,) * 3)


def lung_box(image: sitk.Image, margin_mm=LUNG_MARGIN_MM, lungs=_NOT_COMPUTED) -> IndexBox | None:
    found = lung_mask(image) if lungs is _NOT_COMPUTED else lungs
    return None if found is None else _grown_box(found[0], found[1], image, margin_mm)


def lung_mask(image: sitk.Image, threshold_hu: float = LUNG_THRESHOLD_HU) -> tuple[np.ndarray, np.ndarray] | None:
    """(lung mask [z, y, x] on the binned grid, binning factors (x, y, z)), or None without lungs."""
    small, factors = _shrunk(image)
    air = sitk.GetArrayViewFromImage(small) < threshold_hu
    enclosed = np.zeros_like(air)
    for k in range(air.shape[0]):
        labels, count = ndimage.label(air[k])
        if count == 0:
            continue
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        enclosed[k] = (labels > 0) & ~np.isin(labels, border)
    components, count = ndimage.label(enclosed)
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    keep = np.flatnonzero(sizes >= 0.1 * sizes.max()) + 1
    lungs = np.isin(components, keep)
    voxel_ml = float(np.prod(np.asarray(image.GetSpacing()) * factors)) / 1000.0
    if lungs.sum() * voxel_ml < MIN_LUNG_ML:
        return None
    return lungs, factors


def lung_plane_boxes(image: sitk.Image, region: IndexBox, slab_ranges: list[tuple[int, int]],
                     margin_mm=LUNG_MARGIN_MM, lungs=_NOT_COMPUTED) -> list[IndexBox] | None:
    """Per slab (k ranges relative to `region`), the in-plane box of the lungs in and near it, inside `region`.

    Lungs narrow towards apex and base; a slab there needs a smaller field than the widest slice.
    Returns boxes relative to `region` (i, j limited; k = the slab), or None without lungs.
    """
    found = lung_mask(image) if lungs is _NOT_COMPUTED else lungs
    if found is None:
        return None
    mask, factors = found
    margin_z = int(np.ceil(margin_mm[2] / image.GetSpacing()[2]))
    boxes = []
    for start, stop in slab_ranges:
        k0, k1 = region.start[2] + start - margin_z, region.start[2] + stop + margin_z
        z0, z1 = max(0, k0 // factors[2]), min(mask.shape[0], -(-k1 // factors[2]))
        part = np.zeros_like(mask)
        part[z0:z1] = mask[z0:z1]
        if not part.any():
            boxes.append(IndexBox((0, 0, start), (region.size[0], region.size[1], stop)))
            continue
        box = _grown_box(part, factors, image, margin_mm)
        i0, j0 = (max(0, box.start[a] - region.start[a]) for a in (0, 1))
        i1, j1 = (min(region.size[a], box.stop[a] - region.start[a]) for a in (0, 1))
        if i1 <= i0 or j1 <= j0:
            i0, j0, i1, j1 = 0, 0, region.size[0], region.size[1]
        boxes.append(IndexBox((i0, j0, start), (i1, j1, stop)))
    return boxes


def lung_field(lungs: tuple[np.ndarray, np.ndarray], region: IndexBox, spacing, margin_mm: float = LUNG_FIELD_MARGIN_MM) -> np.ndarray:
    """The lungs, what they enclose and `margin_mm` around them, on the full-resolution grid of `region` ([z, y, x] bool).

    Each axial slice of the binned lung mask has its holes filled (a nodule inside a lung is not air,
    but it is enclosed by it), then the mask grows by the margin (a box, per axis); every
    full-resolution voxel takes the value of the bin it falls in. `spacing`: the image's (x, y, z) mm.
    """
    mask, factors = lungs
    filled = np.stack([ndimage.binary_fill_holes(plane) for plane in mask])
    bin_mm = np.asarray(spacing, dtype=float) * factors
    reach = np.ceil(margin_mm / bin_mm - 1e-9).astype(int)  # bins per side, x y z
    filled = ndimage.maximum_filter(filled, size=tuple(int(2 * r + 1) for r in reach[::-1]))
    # BinShrink drops a last partial bin: voxels there take the last bin's value.
    indices = [np.minimum(np.arange(region.start[a], region.stop[a]) // factors[a], filled.shape[2 - a] - 1) for a in (2, 1, 0)]
    return filled[np.ix_(*indices)]


def _shrunk(image: sitk.Image) -> tuple[sitk.Image, np.ndarray]:
    """The image binned to about SHRUNK_SPACING_MM voxels (never coarser: a thin chest wall must survive)."""
    size, spacing = np.asarray(image.GetSize()), np.asarray(image.GetSpacing())
    factors = np.maximum(1, np.minimum(np.floor(SHRUNK_SPACING_MM / spacing), size // 8)).astype(int)
    return sitk.BinShrink(image, [int(f) for f in factors]), factors


def _grown_box(mask_zyx: np.ndarray, factors: np.ndarray, image: sitk.Image, margin_mm) -> IndexBox:
    """The full-resolution box of a shrunk mask, with a margin in mm, clipped to the image."""
    size = np.asarray(image.GetSize())
    small_size = np.asarray(mask_zyx.shape[::-1])
    ranges = [np.flatnonzero(mask_zyx.any(axis=tuple(a for a in range(3) if a != axis))) for axis in (2, 1, 0)]  # x, y, z
    start_small = np.array([r[0] for r in ranges])
    stop_small = np.array([r[-1] + 1 for r in ranges])
    margin = np.ceil(np.asarray(margin_mm, dtype=float) / np.asarray(image.GetSpacing())).astype(int)
    start = np.clip(start_small * factors - margin, 0, size)
    stop = np.clip(stop_small * factors + margin, 0, size)
    # BinShrink drops the last partial bin: a mask touching the far edge reaches it.
    stop = np.where(stop_small >= small_size, size, stop)
    return IndexBox(tuple(int(v) for v in start), tuple(int(v) for v in stop))
