"""`make_chest_ct`: the parts drawn in order into one volume, and the images made from it."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from VQSegCore.synth.anatomy import _draw_anatomy
from VQSegCore.synth.layout import _Layout
from VQSegCore.synth.noise import _add_ct_noise
from VQSegCore.synth.skeleton import _roughen_bone
from VQSegCore.synth.spec import Phantom, PhantomSpec
from VQSegCore.synth.torso import _build_torso
from VQSegCore.synth.tumour import _TUMOUR_MAX_MM, _TUMOUR_MIN_MM, _draw_tumour, _largest_tumour_mm
from VQSegCore.synth.validate import _validate
from VQSegCore.synth.vessels import _paint_vessels, _vessel_trees


def _default_origin(spec: PhantomSpec) -> tuple[float, float, float]:
    """The origin that puts the volume's centre at (0, 0, 0) mm."""
    direction = np.array(spec.direction, dtype=np.float64).reshape(3, 3)
    size = np.array([*spec.size_xy, spec.n_slices], dtype=np.float64)
    half_extent = np.array(spec.spacing, dtype=np.float64) * (size - 1) / 2
    return tuple(float(v) for v in -(direction @ half_extent))


def _to_image(array: np.ndarray, spec: PhantomSpec) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spec.spacing))
    image.SetDirection(tuple(float(d) for d in spec.direction))
    origin = spec.origin if spec.origin is not None else _default_origin(spec)
    image.SetOrigin(tuple(float(o) for o in origin))
    return image


def make_chest_ct(spec: PhantomSpec = PhantomSpec()) -> Phantom:
    """Draw the chest CT phantom described by `spec`; the same spec gives identical arrays."""
    _validate(spec)
    layout = _Layout.from_spec(spec)
    anatomy_seed, tumour_seed, vessel_seed, noise_seed = np.random.SeedSequence(spec.seed).spawn(4)
    anatomy_rng, tumour_rng, vessel_rng = (
        np.random.default_rng(s) for s in (anatomy_seed, tumour_seed, vessel_seed)
    )
    # Draw the tumour's size and side even when the spec fixes them, so the stream stays aligned.
    size_draw, side_draw = tumour_rng.random(2)
    largest = min(_TUMOUR_MAX_MM, _largest_tumour_mm(layout))
    diameter = (float(spec.tumour_diameter_mm) if spec.tumour_diameter_mm is not None
                else _TUMOUR_MIN_MM + size_draw * (largest - _TUMOUR_MIN_MM))
    side_name = spec.tumour_side or ("left" if side_draw < 0.5 else "right")

    torso = _build_torso(layout, anatomy_rng)
    tissue, hu = _draw_anatomy(layout, torso)
    _roughen_bone(layout, anatomy_rng, tissue, hu)
    _paint_vessels(layout, _vessel_trees(layout, vessel_rng, tissue), tissue, hu)
    label = np.zeros(layout.shape, dtype=np.uint8)
    centre = None
    if spec.tumour:
        box, mask, centre = _draw_tumour(layout, tumour_rng, tissue, hu, diameter,
                                         +1 if side_name == "left" else -1)
        label[box][mask] = 1
    del tissue
    _add_ct_noise(hu, float(spec.noise_hu), noise_seed)

    image = _to_image(hu, spec)
    del hu
    label_image = sitk.GetImageFromArray(label)
    label_image.CopyInformation(image)
    voxel_ml = float(np.prod(spec.spacing)) / 1000
    return Phantom(
        image=image,
        label=label_image,
        tumour_centre_mm=(tuple(image.TransformContinuousIndexToPhysicalPoint([float(c) for c in centre]))
                          if centre is not None else None),
        tumour_diameter_mm=diameter if spec.tumour else 0.0,
        tumour_volume_ml=int(np.count_nonzero(label)) * voxel_ml,
    )
