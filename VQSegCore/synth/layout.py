"""Layout: how reference millimetres map onto this volume's voxels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from VQSegCore.synth.spec import PhantomSpec

# Reference anatomy (mm, in-plane origin at the centre of the field of view).

_TORSO_HALF_WIDTH, _TORSO_HALF_DEPTH = 163.0, 118.0
_LUNG_HEIGHT = 270.0  # base to apex


@dataclass(frozen=True, eq=False)
class _Layout:
    shape: tuple[int, int, int]  # (nz, ny, nx)
    spacing: tuple[float, float, float]  # (sx, sy, sz) mm
    scale_xy: float  # physical mm per reference mm, in-plane
    scale_z: float  # physical mm per reference mm, along z
    z_base_mm: float  # lung base, mm above the lower face of the first slice
    x_ref: np.ndarray  # (nx,) reference mm of each column centre, + = patient's left
    y_ref: np.ndarray  # (ny,) reference mm of each row centre, + = posterior

    @staticmethod
    def from_spec(spec: PhantomSpec) -> _Layout:
        nx, ny = (int(n) for n in spec.size_xy)
        nz = int(spec.n_slices)
        sx, sy, sz = (float(s) for s in spec.spacing)
        # 1.04: room for the torso's seeded size variation; 0.92: a margin of air around it.
        scale_xy = min(1.0, 0.92 * nx * sx / (2.08 * _TORSO_HALF_WIDTH),
                       0.92 * ny * sy / (2.08 * _TORSO_HALF_DEPTH))
        lung_height_mm = min(_LUNG_HEIGHT, 0.9 * nz * sz)
        x_ref = ((np.arange(nx) + 0.5 - nx / 2) * sx / scale_xy).astype(np.float32)
        y_ref = ((np.arange(ny) + 0.5 - ny / 2) * sy / scale_xy).astype(np.float32)
        return _Layout(
            shape=(nz, ny, nx), spacing=(sx, sy, sz), scale_xy=scale_xy,
            scale_z=lung_height_mm / _LUNG_HEIGHT, z_base_mm=(nz * sz - lung_height_mm) / 2,
            x_ref=x_ref, y_ref=y_ref,
        )

    def slice_height_ref(self, k: int) -> float:
        """Reference mm above the lung base of slice k's centre."""
        return ((k + 0.5) * self.spacing[2] - self.z_base_mm) / self.scale_z

    def ref_to_index(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) reference (x, y, height) -> (N, 3) continuous voxel index (x, y, z)."""
        nz, ny, nx = self.shape
        sx, sy, sz = self.spacing
        out = np.empty_like(points, dtype=np.float64)
        out[:, 0] = points[:, 0] * self.scale_xy / sx + nx / 2 - 0.5
        out[:, 1] = points[:, 1] * self.scale_xy / sy + ny / 2 - 0.5
        out[:, 2] = (self.z_base_mm + points[:, 2] * self.scale_z) / sz - 0.5
        return out

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """(rows, cols) slices of the in-plane box [x0, x1] x [y0, y1] in reference mm."""
        return (slice(*_index_span(self.y_ref, y0, y1)), slice(*_index_span(self.x_ref, x0, x1)))


def _index_span(coords: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    return int(np.searchsorted(coords, lo, "left")), int(np.searchsorted(coords, hi, "right"))


# (rows, cols) slices of an in-plane box, as `_Layout.window` returns them.
_Window = tuple[slice, slice]
