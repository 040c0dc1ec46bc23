"""What to draw (`PhantomSpec`) and what comes back (`Phantom`)."""

from __future__ import annotations

from dataclasses import dataclass

import SimpleITK as sitk


@dataclass(frozen=True)
class PhantomSpec:
    """What to draw. Sizes and spacing follow SimpleITK's (x, y, z) order."""

    size_xy: tuple[int, int] = (512, 512)  # (nx, ny) voxels in-plane
    n_slices: int = 300
    spacing: tuple[float, float, float] = (0.7, 0.7, 1.5)  # (x, y, z) mm
    tumour_diameter_mm: float | None = None  # None: drawn from the seed in [10, 60]
    tumour_side: str | None = None  # "left" | "right" | None (drawn from the seed)
    tumour: bool = True  # False: the same chest without a tumour (false-positive checks); label all 0
    noise_hu: float = 15.0  # std of the additive Gaussian noise
    seed: int = 0
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1)  # row-major, like sitk
    origin: tuple[float, float, float] | None = None  # None: volume centred at (0, 0, 0) mm


@dataclass(frozen=True)
class Phantom:
    image: sitk.Image  # int16 HU, geometry from the spec
    label: sitk.Image  # uint8, 1 = tumour; exactly the image's geometry
    tumour_centre_mm: tuple[float, float, float] | None  # physical point (sitk convention); None without a tumour
    tumour_diameter_mm: float  # nominal diameter (0 without a tumour)
    tumour_volume_ml: float  # label voxels x voxel volume
