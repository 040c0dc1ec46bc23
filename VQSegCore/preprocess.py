"""The one place that maps a volume to the model's slice grid and back (docs/architecture.md §3.2).

Training calls `to_model_grid` to make slices; inference calls it too, runs the model on the
slices and maps the outputs back with `from_model_grid` / `probabilities_to_label`. The output
always lies on exactly the input's grid: its size, spacing, origin and direction are the stored
doubles of the input, set again, never recomputed.

The model grid
--------------
1. Orientation. The volume is brought to the canonical LPS orientation: index axes x, y, z point
   to the patient's left, posterior and superior, so the array [z, y, x] shows every axial slice
   the same way whatever the scanner stored. When the direction is a permutation of the axes with
   sign flips (cosines within `AXIS_TOLERANCE` of 0 / ±1), this is an exact numpy transpose and
   flip: no interpolation, and the inverse is exact. A truly oblique direction (gantry tilt) is
   instead resampled once, linearly, onto an axis-aligned grid covering the whole volume, straight
   at the model's in-plane spacing (``reorientation == "resampled"``).
2. In-plane spacing. Each axial slice is resampled, linearly, to `spacing_mm`; the slices and the
   slice spacing are kept. When downsampling, a Gaussian anti-aliasing filter is applied first
   (sigma = (factor - 1) / 2 voxels per axis, the rule of skimage.transform.resize), on the
   permutation path only; the oblique path interpolates without a pre-filter. When the image
   spacing already equals the model spacing (relative difference < `SPACING_RTOL`) nothing is
   resampled at all. The model grid is centred on the image and covers it
   (size = ceil(extent / spacing)).
3. Intensities are normalised on the native grid, before resampling, to float32: CT is clipped to
   the HU window and mapped to [0, 1] (air = 0.0); MRI is clipped to the volume's percentiles and
   z-scored with the mean and standard deviation of the clipped whole volume (no foreground mask:
   no threshold heuristic that could differ between scans; the clip bounds the background's pull).

Memory: the permutation path works slice by slice, so besides the input it holds only the
float32 output and one slice's temporaries. The oblique path holds one float32 copy of the input
plus the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from VQSegCore.io.geometry import GEOMETRY_TOLERANCE_MM, Geometry
from VQSegCore.model.config import PreprocessingConfig

__all__ = [
    "AXIS_TOLERANCE",
    "SPACING_RTOL",
    "IntensityTransform",
    "ModelGridVolume",
    "Padding",
    "crop_from_padding",
    "from_model_grid",
    "intensity_transform",
    "label_to_model_grid",
    "pad_to_multiple",
    "probabilities_to_label",
    "slice_stack",
    "to_model_grid",
    "scalar_to_original",
]

# A direction cosine this close to 0 or ±1 counts as axis-aligned (0.05 mm over 500 mm).
AXIS_TOLERANCE = 1e-4
# Spacings this close (relative) count as equal: NIfTI stores spacing as float32.
SPACING_RTOL = 1e-4

_IDENTITY_3D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_IDENTITY_2D = (1.0, 0.0, 0.0, 1.0)


# ---- intensities ---------------------------------------------------------------------------
@dataclass(frozen=True)
class IntensityTransform:
    """clip(value, clip_low, clip_high), then (value - offset) / scale, in float32."""

    clip_low: float
    clip_high: float
    offset: float
    scale: float

    def apply(self, array: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty(np.shape(array), dtype=np.float32)
        out[...] = array
        np.clip(out, np.float32(self.clip_low), np.float32(self.clip_high), out=out)
        out -= np.float32(self.offset)
        out /= np.float32(self.scale)
        return out

    @property
    def background(self) -> float:
        """The normalised value of the lowest intensity (air): 0.0 for CT."""
        return float(self.apply(np.array([self.clip_low], dtype=np.float64))[0])


def intensity_transform(array: np.ndarray, preprocessing: PreprocessingConfig) -> IntensityTransform:
    """The normalisation `preprocessing` prescribes; for MRI its statistics come from `array`."""
    if preprocessing.modality == "ct":
        low, high = (float(v) for v in preprocessing.hu_window)
        return IntensityTransform(low, high, low, high - low)
    low, high = (float(v) for v in np.percentile(array, preprocessing.mri_percentiles))
    total = total_sq = 0.0
    count = 0
    for slab in _slabs(array):  # float64 sums, one slab at a time: no full-size temporary
        clipped = np.clip(slab.astype(np.float64), low, high)
        total += float(clipped.sum())
        total_sq += float(np.square(clipped).sum())
        count += clipped.size
    mean = total / max(count, 1)
    std = math.sqrt(max(total_sq / max(count, 1) - mean * mean, 0.0))
    return IntensityTransform(low, high, mean, std if std > 1e-6 else 1.0)


def _slabs(array: np.ndarray, voxels: int = 1 << 22):
    array = np.asarray(array)
    if array.ndim == 0:
        yield array.reshape(1)
        return
    step = max(1, voxels // max(1, array[0].size))
    for start in range(0, array.shape[0], step):
        yield array[start : start + step]


# ---- the model grid ------------------------------------------------------------------------
@dataclass
class ModelGridVolume:
    """A volume on the model's grid, with what it takes to go back exactly."""

    array: np.ndarray  # float32 [z, H, W]: normalised, canonical LPS orientation, model spacing
    original: Geometry  # the input's grid; every output is built on it
    model: Geometry  # the grid of `array`: identity direction, spacing (spacing_mm, slice spacing)
    reorientation: str  # "none" | "permuted" (exact transpose/flip) | "resampled" (oblique input)
    axes: tuple[int, int, int]  # numpy transpose from the input's [z, y, x] to canonical (permuted/none)
    flips: tuple[int, ...]  # canonical numpy axes flipped after the transpose
    canonical: Geometry | None  # the reoriented grid before in-plane resampling (None when oblique)
    resampled_in_plane: bool  # False: `array` is the canonical grid voxel for voxel
    anti_aliased: bool  # a Gaussian pre-filter was applied before downsampling
    intensity: IntensityTransform

    @property
    def background_value(self) -> float:
        """Normalised air: the value to pad with (0.0 for CT)."""
        return self.intensity.background

    @property
    def notes(self) -> list[str]:
        found = []
        if self.reorientation == "resampled":
            found.append("the image direction is oblique: it was resampled onto an axis-aligned grid")
        return found


def to_model_grid(image: sitk.Image, preprocessing: PreprocessingConfig, *, anti_alias: bool = True,
                  transform: IntensityTransform | None = None) -> ModelGridVolume:
    """Reorient to LPS, resample in-plane to `preprocessing.spacing_mm`, normalise to float32.

    `transform`: the intensity normalisation to use (default: `intensity_transform` of this image);
    pass the whole volume's when `image` is one slab of it, so MRI statistics do not vary by slab.
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("to_model_grid needs a 3D scalar image")
    original = Geometry.of(image)
    source = sitk.GetArrayViewFromImage(image)
    transform = transform or intensity_transform(source, preprocessing)
    permutation = _axis_permutation(original.direction)
    if permutation is None:
        return _oblique_to_model_grid(image, original, preprocessing, transform)

    axes, flips, canonical = _canonical(original, permutation)
    canonical_array = _reorient(source, axes, flips)  # a view: nothing copied yet
    model, resample = _model_grid_in_plane(canonical, preprocessing.spacing_mm)
    sigma = _anti_alias_sigma(canonical, model) if (resample and anti_alias) else None
    depth = canonical.size[2]
    out = np.empty((depth, model.size[1], model.size[0]), dtype=np.float32)
    if not resample:
        for start in range(0, depth, 16):
            transform.apply(canonical_array[start : start + 16], out=out[start : start + 16])
    else:
        scratch = np.empty(canonical_array.shape[1:], dtype=np.float32)
        for k in range(depth):
            transform.apply(canonical_array[k], out=scratch)
            if sigma is not None:
                ndimage.gaussian_filter(scratch, sigma, output=scratch, mode="nearest")
            out[k] = _resample_slice(scratch, canonical, model, sitk.sitkLinear, transform.background)
    return ModelGridVolume(
        array=out, original=original, model=model,
        reorientation="none" if (axes == (0, 1, 2) and not flips) else "permuted",
        axes=axes, flips=flips, canonical=canonical, resampled_in_plane=resample,
        anti_aliased=sigma is not None, intensity=transform,
    )


def model_grid_size(original: Geometry, spacing_mm) -> tuple[int, int, int]:
    """(x, y, z) voxels of the grid `to_model_grid` makes from an image of this geometry, without
    reading any voxel: what memory estimates must use, since resampling can multiply the voxel count."""
    permutation = _axis_permutation(original.direction)
    if permutation is None:
        return tuple(_oblique_model_grid(original, spacing_mm).size)
    _, _, canonical = _canonical(original, permutation)
    return tuple(_model_grid_in_plane(canonical, spacing_mm)[0].size)


def label_to_model_grid(label: sitk.Image, grid: ModelGridVolume) -> np.ndarray:
    """A label map on the original image's grid → [z, H, W] on `grid` (nearest neighbour), for training."""
    if Geometry.of(label).differences(grid.original, tolerance=GEOMETRY_TOLERANCE_MM):
        raise ValueError("the label map does not lie on the image grid the model grid was made from")
    values = _label_dtype(sitk.GetArrayViewFromImage(label))
    if grid.reorientation == "resampled":
        image = sitk.GetImageFromArray(values)
        grid.original.apply_to(image)
        return sitk.GetArrayFromImage(_resample_3d(image, grid.model, sitk.sitkNearestNeighbor, 0.0))
    canonical = _reorient(values, grid.axes, grid.flips)
    if not grid.resampled_in_plane:
        return np.ascontiguousarray(canonical)
    out = np.empty(grid.array.shape, dtype=values.dtype)
    for k in range(out.shape[0]):
        out[k] = _resample_slice(np.ascontiguousarray(canonical[k]), grid.canonical, grid.model, sitk.sitkNearestNeighbor, 0.0)
    return out


def from_model_grid(values: np.ndarray, grid: ModelGridVolume, *, kind: str) -> sitk.Image:
    """Map model-grid outputs back onto exactly the original image's grid.

    kind "label": `values` [z, H, W] integer labels, nearest neighbour → uint8/uint16 label image.
    kind "probabilities": `values` [C, z, H, W] → float32 vector image with C components, linear.
    """
    values = np.asarray(values)
    if kind == "label":
        _check_shape(values.shape, grid.array.shape, "label map")
        labels = _label_dtype(values)
        return _finish(_back_to_original(labels, grid, sitk.sitkNearestNeighbor), grid)
    if kind == "probabilities":
        if values.ndim != 4:
            raise ValueError(f"probabilities must be [C, z, H, W], got shape {values.shape}")
        _check_shape(values.shape[1:], grid.array.shape, "probabilities")
        channels = [_back_to_original(values[c].astype(np.float32, copy=False), grid, sitk.sitkLinear) for c in range(values.shape[0])]
        image = sitk.GetImageFromArray(np.stack(channels, axis=-1), isVector=True)
        grid.original.apply_to(image)
        return image
    raise ValueError(f"kind must be 'label' or 'probabilities', got {kind!r}")


def scalar_to_original(values: np.ndarray, grid: ModelGridVolume) -> np.ndarray:
    """A float map [z, H, W] on the model grid → float32 [z, y, x] on the original grid (linear)."""
    values = np.asarray(values, dtype=np.float32)
    _check_shape(values.shape, grid.array.shape, "map")
    return _back_to_original(values, grid, sitk.sitkLinear)


def probabilities_to_label(values: np.ndarray, grid: ModelGridVolume, labels: tuple[int, ...] | None = None,
                           *, sums_to_one: bool = False) -> sitk.Image:
    """Per-class probabilities [C, z, H, W] → linear back to the original grid → argmax label image.

    Works slice by slice (one class at a time on the oblique path), so memory stays far below that
    of `from_model_grid(kind="probabilities")`. `labels[c]` is the label value of channel c
    (default c); ties go to the earlier channel, as in numpy's argmax. `sums_to_one` (a softmax):
    channel 0 is not resampled but taken as 1 - the others, exact since linear interpolation keeps
    sums; it saves 1/C of the work (half for one class).
    """
    values = np.asarray(values)
    if values.ndim != 4:
        raise ValueError(f"probabilities must be [C, z, H, W], got shape {values.shape}")
    _check_shape(values.shape[1:], grid.array.shape, "probabilities")
    labels = tuple(range(values.shape[0])) if labels is None else tuple(labels)
    if len(labels) != values.shape[0]:
        raise ValueError(f"{len(labels)} label values for {values.shape[0]} channels")
    if values.shape[0] > 256:
        raise ValueError("at most 256 channels")
    if grid.reorientation == "resampled":
        best_class = _oblique_argmax(values, grid)
    else:
        # Reorientation is an exact transpose/flip, so argmax commutes with it: resample and
        # argmax slice by slice on the canonical grid, then reorient only the uint8 result.
        size = grid.canonical.size
        canonical = np.empty((size[2], size[1], size[0]), dtype=np.uint8)
        for k in range(size[2]):
            if grid.resampled_in_plane:
                first = 1 if sums_to_one else 0
                scores = np.stack([
                    _resample_slice(np.ascontiguousarray(values[c, k], dtype=np.float32), grid.model, grid.canonical, sitk.sitkLinear, 0.0)
                    for c in range(first, values.shape[0])
                ])
                if sums_to_one:  # outside the model grid every channel is 0: background gets 1
                    scores = np.concatenate([1.0 - scores.sum(axis=0, keepdims=True), scores])
            else:
                scores = values[:, k]
            canonical[k] = np.argmax(scores, axis=0)
        best_class = np.ascontiguousarray(_unorient(canonical, grid.axes, grid.flips))
    lookup = np.asarray(labels, dtype=np.uint16 if max(labels) > 255 else np.uint8)
    return _finish(lookup[best_class], grid)


def _oblique_argmax(values: np.ndarray, grid: ModelGridVolume) -> np.ndarray:
    best = best_class = None
    for c in range(values.shape[0]):
        score = _back_to_original(values[c].astype(np.float32, copy=False), grid, sitk.sitkLinear)
        if best is None:
            best, best_class = score, np.zeros(score.shape, dtype=np.uint8)
            continue
        better = score > best  # ties keep the earlier channel, as argmax does
        best[better] = score[better]
        best_class[better] = c
        del score, better
    return best_class


# ---- padding and 2.5D ----------------------------------------------------------------------
@dataclass(frozen=True)
class Padding:
    """Voxels added before/after along the last two axes (H, W)."""

    before: tuple[int, int]
    after: tuple[int, int]


def pad_to_multiple(array: np.ndarray, multiple: int, value: float = 0.0) -> tuple[np.ndarray, Padding]:
    """Pad the last two axes (centred) up to multiples of `multiple`; 0.0 is normalised CT air."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    array = np.asarray(array)
    if array.ndim < 2:
        raise ValueError("pad_to_multiple needs an array with at least two axes [..., H, W]")
    extra = [(-n) % multiple for n in array.shape[-2:]]
    before = tuple(e // 2 for e in extra)
    after = tuple(e - b for e, b in zip(extra, before))
    if not any(extra):
        return array, Padding((0, 0), (0, 0))
    widths = [(0, 0)] * (array.ndim - 2) + list(zip(before, after))
    return np.pad(array, widths, mode="constant", constant_values=value), Padding(before, after)


def crop_from_padding(array: np.ndarray, padding: Padding) -> np.ndarray:
    """Undo `pad_to_multiple` on the last two axes (works for [..., H, W] outputs of any leading shape)."""
    (top, left), (bottom, right) = padding.before, padding.after
    height, width = array.shape[-2:]
    return array[..., top : height - bottom, left : width - right]


def slice_stack(volume_array: np.ndarray, k: int, context_slices: int) -> np.ndarray:
    """The 2.5D input for slice k: slices k-n … k … k+n as channels [2n+1, H, W], edges replicated."""
    depth = volume_array.shape[0]
    if not 0 <= k < depth:
        raise IndexError(f"slice {k} outside 0..{depth - 1}")
    if context_slices < 0:
        raise ValueError("context_slices must be >= 0")
    indices = np.clip(np.arange(k - context_slices, k + context_slices + 1), 0, depth - 1)
    return volume_array[indices]


# ---- orientation ---------------------------------------------------------------------------
def _axis_permutation(direction: tuple[float, ...]) -> tuple[tuple[int, ...], tuple[bool, ...]] | None:
    """For each physical axis (L, P, S): the index axis along it and whether it runs backwards.

    None when the direction is not a permutation with sign flips (oblique).
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)  # column i: direction of index axis i
    source = tuple(int(np.argmax(np.abs(matrix[physical]))) for physical in range(3))
    if sorted(source) != [0, 1, 2]:
        return None
    snapped = np.zeros((3, 3))
    for physical, index_axis in enumerate(source):
        snapped[physical, index_axis] = np.sign(matrix[physical, index_axis])
    if np.abs(matrix - snapped).max() > AXIS_TOLERANCE:
        return None
    return source, tuple(bool(matrix[p, source[p]] < 0) for p in range(3))


def _canonical(original: Geometry, permutation) -> tuple[tuple[int, int, int], tuple[int, ...], Geometry]:
    source, backwards = permutation
    # numpy axis a of an [z, y, x] array is index axis 2 - a.
    axes = tuple(2 - source[2 - a] for a in range(3))
    flips = tuple(a for a in range(3) if backwards[2 - a])
    corner = [0] * 3
    for physical in range(3):
        if backwards[physical]:
            corner[source[physical]] = original.size[source[physical]] - 1
    reference = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    reference.SetSpacing(original.spacing)
    reference.SetOrigin(original.origin)
    reference.SetDirection(original.direction)
    origin = reference.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
    canonical = Geometry(
        size=tuple(original.size[source[p]] for p in range(3)),
        spacing=tuple(original.spacing[source[p]] for p in range(3)),
        origin=tuple(origin),
        direction=_IDENTITY_3D,
    )
    return axes, flips, canonical


def _reorient(array: np.ndarray, axes: tuple[int, ...], flips: tuple[int, ...]) -> np.ndarray:
    view = np.transpose(array, axes)
    return np.flip(view, flips) if flips else view


def _unorient(array: np.ndarray, axes: tuple[int, ...], flips: tuple[int, ...]) -> np.ndarray:
    view = np.flip(array, flips) if flips else array
    return np.transpose(view, np.argsort(axes))


# ---- in-plane resampling (permutation path) ------------------------------------------------
def _model_grid_in_plane(canonical: Geometry, spacing_mm) -> tuple[Geometry, bool]:
    target = tuple(float(s) for s in spacing_mm)
    if all(abs(s - t) <= SPACING_RTOL * t for s, t in zip(canonical.spacing[:2], target)):
        return canonical, False
    size, origin = [], []
    for axis in range(2):
        n, s, t = canonical.size[axis], canonical.spacing[axis], target[axis]
        m = max(1, math.ceil(n * s / t - 1e-6))  # cover the whole slice
        size.append(m)
        origin.append(canonical.origin[axis] + ((n - 1) * s - (m - 1) * t) / 2)  # centred
    model = Geometry(
        size=(size[0], size[1], canonical.size[2]),
        spacing=(target[0], target[1], canonical.spacing[2]),
        origin=(origin[0], origin[1], canonical.origin[2]),
        direction=_IDENTITY_3D,
    )
    return model, True


def _anti_alias_sigma(source: Geometry, target: Geometry) -> tuple[float, float] | None:
    # Per numpy axis (y, x), in source voxels; skimage.transform.resize's rule.
    sigma = tuple(max(0.0, (target.spacing[axis] / source.spacing[axis] - 1) / 2) for axis in (1, 0))
    return sigma if any(s > 0 for s in sigma) else None


def _resample_slice(array: np.ndarray, source: Geometry, target: Geometry, interpolator: int, default: float) -> np.ndarray:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(source.spacing[:2])
    image.SetOrigin(source.origin[:2])
    resampled = sitk.Resample(
        image, target.size[:2], sitk.Transform(), interpolator,
        target.origin[:2], target.spacing[:2], _IDENTITY_2D, float(default), image.GetPixelID(),
    )
    return sitk.GetArrayFromImage(resampled)  # a copy: a view would dangle once `resampled` is freed


# ---- oblique path --------------------------------------------------------------------------
def _oblique_to_model_grid(image: sitk.Image, original: Geometry, preprocessing: PreprocessingConfig, transform: IntensityTransform) -> ModelGridVolume:
    model = _oblique_model_grid(original, preprocessing.spacing_mm)
    normalised = sitk.GetImageFromArray(transform.apply(sitk.GetArrayViewFromImage(image)))
    original.apply_to(normalised)
    resampled = _resample_3d(normalised, model, sitk.sitkLinear, transform.background)
    del normalised
    return ModelGridVolume(
        array=sitk.GetArrayFromImage(resampled), original=original, model=model,
        reorientation="resampled", axes=(0, 1, 2), flips=(), canonical=None,
        resampled_in_plane=True, anti_aliased=False, intensity=transform,
    )


def _oblique_model_grid(original: Geometry, spacing_mm) -> Geometry:
    matrix = np.asarray(original.direction, dtype=float).reshape(3, 3)
    scaled = matrix @ np.diag(original.spacing)
    size = np.asarray(original.size, dtype=float)
    corners = np.array([[a, b, c] for a in (-0.5, size[0] - 0.5) for b in (-0.5, size[1] - 0.5) for c in (-0.5, size[2] - 0.5)])
    physical = corners @ scaled.T + np.asarray(original.origin)
    low, high = physical.min(axis=0), physical.max(axis=0)
    slice_axis = int(np.argmax(np.abs(matrix[2])))  # the index axis closest to superior
    spacing = np.array([float(spacing_mm[0]), float(spacing_mm[1]), original.spacing[slice_axis]])
    count = np.maximum(1, np.ceil((high - low) / spacing - 1e-6)).astype(int)
    centre = (low + high) / 2
    origin = centre - (count - 1) / 2 * spacing
    return Geometry(
        size=tuple(int(n) for n in count), spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in origin), direction=_IDENTITY_3D,
    )


def _resample_3d(image: sitk.Image, target: Geometry, interpolator: int, default: float) -> sitk.Image:
    return sitk.Resample(
        image, target.size, sitk.Transform(), interpolator,
        target.origin, target.spacing, target.direction, float(default), image.GetPixelID(),
    )


# ---- back to the original grid -------------------------------------------------------------
def _back_to_original(values: np.ndarray, grid: ModelGridVolume, interpolator: int) -> np.ndarray:
    """[z, H, W] model-grid array → [z, y, x] array on the original grid (same dtype)."""
    if grid.reorientation == "resampled":
        image = sitk.GetImageFromArray(np.ascontiguousarray(values))
        grid.model.apply_to(image)
        return sitk.GetArrayFromImage(_resample_3d(image, grid.original, interpolator, 0.0))
    if grid.resampled_in_plane:
        canonical = np.empty((grid.canonical.size[2], grid.canonical.size[1], grid.canonical.size[0]), dtype=values.dtype)
        for k in range(canonical.shape[0]):
            canonical[k] = _resample_slice(np.ascontiguousarray(values[k]), grid.model, grid.canonical, interpolator, 0.0)
    else:
        canonical = values
    return np.ascontiguousarray(_unorient(canonical, grid.axes, grid.flips))


def _finish(array: np.ndarray, grid: ModelGridVolume) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    grid.original.apply_to(image)  # the input's stored doubles, set again: bit-for-bit equal
    return image


def _label_dtype(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind not in "biu":
        if not np.array_equal(values, np.round(values)):
            raise ValueError("label values must be whole numbers")
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError("label values must lie in 0..65535")
    dtype = np.uint8 if not values.size or values.max() <= 255 else np.uint16
    return values.astype(dtype, copy=False)


def _check_shape(shape: tuple[int, ...], expected: tuple[int, ...], what: str) -> None:
    if tuple(shape) != tuple(expected):
        raise ValueError(f"{what} shape {tuple(shape)} does not match the model grid [z, H, W] {tuple(expected)}")
