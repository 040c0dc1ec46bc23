"""Checks of a `PhantomSpec`, with messages that say what to change."""

from __future__ import annotations

import math
import numbers

import numpy as np

from VQSegCore.synth.layout import _Layout
from VQSegCore.synth.spec import PhantomSpec
from VQSegCore.synth.tumour import _TUMOUR_MAX_MM, _TUMOUR_MIN_MM, _largest_tumour_mm


def _validate(spec: PhantomSpec) -> None:
    def is_int(v) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    def finite_numbers(values, n: int, what: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be {n} numbers, got {values!r}") from None
        if len(values) != n or not all(math.isfinite(v) for v in values):
            raise ValueError(f"{what} must be {n} finite numbers, got {values!r}")
        return values

    if len(tuple(spec.size_xy)) != 2 or not all(is_int(n) and n > 0 for n in spec.size_xy):
        raise ValueError(f"size_xy must be two positive integers (nx, ny), got {spec.size_xy!r}")
    if not (is_int(spec.n_slices) and spec.n_slices > 0):
        raise ValueError(f"n_slices must be a positive integer, got {spec.n_slices!r}")
    spacing = finite_numbers(spec.spacing, 3, "spacing")
    if min(spacing) <= 0:
        raise ValueError(f"spacing must be > 0 mm on every axis, got {spacing!r}")
    if not (isinstance(spec.noise_hu, numbers.Real) and 0 <= spec.noise_hu < 1000):
        raise ValueError(f"noise_hu must be a number in [0, 1000), got {spec.noise_hu!r}")
    if spec.tumour_side not in (None, "left", "right"):
        raise ValueError(f"tumour_side must be 'left', 'right' or None, got {spec.tumour_side!r}")
    if not is_int(spec.seed):
        raise ValueError(f"seed must be an integer, got {spec.seed!r}")
    if spec.origin is not None:
        finite_numbers(spec.origin, 3, "origin")
    direction = np.array(finite_numbers(spec.direction, 9, "direction")).reshape(3, 3)
    if not np.allclose(direction @ direction.T, np.eye(3), atol=1e-6):
        raise ValueError(f"direction must be a 3x3 orthonormal matrix (row-major), got {spec.direction!r}")

    d = spec.tumour_diameter_mm
    if d is not None:
        if not (isinstance(d, numbers.Real) and _TUMOUR_MIN_MM <= d <= _TUMOUR_MAX_MM):
            raise ValueError(
                f"tumour_diameter_mm must be within [{_TUMOUR_MIN_MM:g}, {_TUMOUR_MAX_MM:g}] mm, got {d!r}"
            )
    if not spec.tumour:
        return
    largest = _largest_tumour_mm(_Layout.from_spec(spec))
    needed = _TUMOUR_MIN_MM if d is None else float(d)
    if needed > largest:
        fov = " x ".join(f"{n * s:.0f}" for n, s in zip((*spec.size_xy, spec.n_slices), spacing))
        raise ValueError(
            f"a {needed:g} mm tumour does not fit in a {fov} mm field of view: the lungs drawn in it "
            f"leave room for at most {largest:.1f} mm; increase size_xy, n_slices or the spacing"
        )
