"""The tumour: a lobulated soft-tissue mass whose medial surface abuts the mediastinum."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from VQSegCore.synth.layout import _LUNG_HEIGHT, _Layout
from VQSegCore.synth.maths import _unit_rows
from VQSegCore.synth.tissues import _HU_BY_TISSUE, _LUNG_REGION, _MEDIASTINUM, _T, _is_any

_TUMOUR_MIN_MM, _TUMOUR_MAX_MM = 10.0, 60.0


def _largest_tumour_mm(layout: _Layout) -> float:
    """Largest diameter a central tumour can have and still sit inside the drawn lung."""
    lung_width_mm = 110.0 * layout.scale_xy  # mediastinum to lateral chest wall, mid-chest
    return min(0.75 * lung_width_mm, 0.62 * _LUNG_HEIGHT * layout.scale_z)


@dataclass(frozen=True)
class _TumourShape:
    """A lobulated, slightly elongated star-shaped body with a heterogeneous interior.

    Its surface lies at distance R * g(u) / g_norm from the centre in direction u, where g adds
    a few soft bumps (lobes) to 1 and g_norm = cbrt(mean g^3) makes R the radius of the sphere
    of equal volume: the volume of a star-shaped body is 4/3 pi mean(r^3).
    """

    lobe_dirs: np.ndarray  # (n, 3) unit vectors (x, y, z)
    lobe_weights: np.ndarray  # (n,)
    lobe_sharpness: np.ndarray  # (n,)
    stretch: np.ndarray  # (3,) axis factors with product 1
    waves: np.ndarray  # (3, 3) wave vectors (rad/mm) of the internal heterogeneity
    phases: np.ndarray  # (3,)
    g_norm: float
    g_max: float

    @staticmethod
    def draw(rng: np.random.Generator) -> _TumourShape:
        n = int(rng.integers(5, 9))
        dirs = _unit_rows(rng.standard_normal((n, 3)))
        weights, sharpness = rng.uniform(0.15, 0.45, n), rng.uniform(4.0, 10.0, n)
        stretch = rng.uniform(0.85, 1.15, 3)
        waves = _unit_rows(rng.standard_normal((3, 3))) * (2 * np.pi / rng.uniform(8.0, 20.0, 3))[:, None]
        directions = _unit_rows(rng.standard_normal((4096, 3)))
        g = 1 + (weights * np.exp(sharpness * (directions @ dirs.T - 1))).sum(axis=1)
        return _TumourShape(
            lobe_dirs=dirs, lobe_weights=weights, lobe_sharpness=sharpness,
            stretch=stretch / np.prod(stretch) ** (1 / 3), waves=waves,
            phases=rng.uniform(0, 2 * np.pi, 3), g_norm=float(np.mean(g ** 3)) ** (1 / 3),
            g_max=float(g.max()),
        )

    def surface_radius(self, dx, dy, dz, rho) -> np.ndarray:
        """Surface radius, in units of R, in the direction of each offset (dx, dy, dz)/rho."""
        inv_rho = 1 / np.maximum(rho, np.float32(1e-6))
        g = np.ones(rho.shape, dtype=np.float32)
        for (cx, cy, cz), w, k in zip(self.lobe_dirs.astype(np.float32), self.lobe_weights,
                                       self.lobe_sharpness):
            cos = (dx * cx + dy * cy) + dz * cz
            cos *= inv_rho
            cos -= 1
            cos *= np.float32(k)
            g += np.float32(w) * np.exp(cos)
        g /= np.float32(self.g_norm)
        return g


def _tumour_centre_index(layout: _Layout, rng: np.random.Generator, tissue: np.ndarray,
                         radius_mm: float, side: int) -> np.ndarray:
    """Continuous index (x, y, z) at hilum level, so that the mass crosses the medial lung border."""
    nz, ny, nx = layout.shape
    sx, sy, sz = layout.spacing
    radius_t = radius_mm / (layout.scale_z * _LUNG_HEIGHT)
    lo, hi = max(0.47, 0.12 + radius_t), min(0.6, 0.9 - radius_t)
    t = rng.uniform(lo, hi) if lo < hi else (lo + hi) / 2
    radius_ref = radius_mm / layout.scale_xy
    y_ref = rng.uniform(max(-25.0, -80.0 + radius_ref), max(-25.0, min(15.0, 78.0 - radius_ref)))
    _, y, z = np.rint(layout.ref_to_index(np.array([[0.0, y_ref, t * _LUNG_HEIGHT]]))[0]).astype(int)
    z, y = int(np.clip(z, 0, nz - 1)), int(np.clip(y, 0, ny - 1))
    # The medial border of this lung on the rows the mass will span (half its size around the
    # centre): its median is where the mass meets the mediastinum over a broad face, rather
    # than where a hilar vessel happens to bulge into the lung.
    dz, dy = max(1, round(radius_mm / 2 / sz)), max(1, round(radius_mm / 2 / sy))
    slab = (slice(max(z - dz, 0), z + dz + 1), slice(max(y - dy, 0), y + dy + 1))
    lung = _is_any(tissue[slab], _LUNG_REGION) & (np.sign(layout.x_ref) == side)
    has_lung = lung.any(axis=2)
    if not has_lung.any():
        raise ValueError("the field of view is too small to draw a lung for the tumour")
    first = np.argmax(lung, axis=2) if side > 0 else nx - 1 - np.argmax(lung[..., ::-1], axis=2)
    medial = float(np.median(first[has_lung]))
    rows = np.flatnonzero(has_lung.any(axis=0)) + slab[1].start
    y = int(rows[np.argmin(np.abs(rows - y))])
    # Start the mass across the border: the mediastinum clips its medial side flat.
    x = medial + side * 0.55 * radius_mm / sx
    return np.array([x, y, z], dtype=np.float64)


def _tumour_mask(layout: _Layout, shape: _TumourShape, tissue: np.ndarray, centre: np.ndarray,
                 diameter_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """Bounding box (z, y, x) and mask of the mass, grown to the nominal volume inside the lung."""
    nz, ny, nx = layout.shape
    spacing = np.array(layout.spacing)
    max_growth = 1.3
    reach_mm = max_growth * diameter_mm / 2 * shape.g_max / shape.g_norm * shape.stretch.max()
    lo = np.maximum(np.floor(centre - reach_mm / spacing - 1), 0).astype(int)
    hi = np.minimum(np.ceil(centre + reach_mm / spacing + 2), [nx, ny, nz]).astype(int)
    box = tuple(slice(a, b) for a, b in zip(lo[::-1], hi[::-1]))
    dx, dy, dz = _box_offsets_mm(layout, centre, lo, hi, shape.stretch)

    rho = np.sqrt(dx * dx + dy * dy + dz * dz)
    # Relative radius of each voxel: it is inside a mass of radius R iff relative <= R.
    relative = rho / shape.surface_radius(dx, dy, dz, rho)
    allowed = _is_any(tissue[box], _LUNG_REGION) & (relative <= max_growth * diameter_mm / 2)
    # Clipping at the mediastinum removes part of the mass: choose R so the volume is nominal.
    candidates = np.sort(relative[allowed])
    target_count = round(math.pi / 6 * diameter_mm ** 3 / float(np.prod(spacing)))
    if candidates.size == 0:
        return box, np.zeros(relative.shape, dtype=bool)
    radius = candidates[min(max(target_count, 1), candidates.size) - 1]
    return box, _largest_component(allowed & (relative <= radius))


def _box_offsets_mm(layout: _Layout, centre, lo, hi, stretch):
    """Broadcastable offsets (mm, divided by the stretch) of a box's voxels from the centre."""
    axes = [((np.arange(lo[i], hi[i]) - centre[i]) * layout.spacing[i] / stretch[i]).astype(np.float32)
            for i in range(3)]
    return axes[0][None, None, :], axes[1][None, :, None], axes[2][:, None, None]


def _tumour_hu(shape: _TumourShape, layout: _Layout, centre, lo, voxels, diameter_mm) -> np.ndarray:
    """Soft-tissue density with gentle waves and, in large masses, a slightly necrotic core."""
    z, y, x = voxels
    offsets = [((index + lo[i] - centre[i]) * layout.spacing[i]).astype(np.float32)
               for i, index in enumerate((x, y, z))]
    texture = sum(np.cos(offsets[0] * w[0] + offsets[1] * w[1] + offsets[2] * w[2] + p)
                  for w, p in zip(shape.waves.astype(np.float32), shape.phases))
    hu = _HU_BY_TISSUE[_T.TUMOUR] + 5.0 * texture
    if diameter_mm > 30:
        rho = np.sqrt(sum(o * o for o in offsets))
        hu -= 12.0 * np.clip(1 - rho / (0.2 * diameter_mm), 0, 1)
    return np.clip(np.rint(hu), 10, 70).astype(np.int16)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)))
    return sitk.GetArrayFromImage(sitk.RelabelComponent(components)) == 1  # 1: the largest


def _mediastinal_contact(tissue: np.ndarray, mask: np.ndarray, side: int) -> float:
    """Share of the mass's rows (z, y) whose medial end touches the mediastinum."""
    rows = mask.any(axis=2)
    if not rows.any():
        return 0.0
    nx = mask.shape[2]
    end = np.argmax(mask, axis=2) if side > 0 else nx - 1 - np.argmax(mask[..., ::-1], axis=2)
    beyond = np.clip(end - side, 0, nx - 1)
    z, y = np.nonzero(rows)
    touching = _is_any(tissue[z, y, beyond[z, y]], _MEDIASTINUM)
    return float(touching.mean())


def _draw_tumour(layout: _Layout, rng: np.random.Generator, tissue: np.ndarray, hu: np.ndarray,
                 diameter_mm: float, side: int) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    shape = _TumourShape.draw(rng)
    centre = _tumour_centre_index(layout, rng, tissue, diameter_mm / 2, side)
    # Where hilar vessels bulge into the lung, a mass can end up touching them only at a point:
    # move it medially until a fair part of its medial surface lies on the mediastinum.
    step = side * max(0.15 * diameter_mm / layout.spacing[0], 0.5)
    tries = []
    for attempt in range(8):
        moved = centre - np.array([attempt * step, 0.0, 0.0])
        box, mask = _tumour_mask(layout, shape, tissue, moved, diameter_mm)
        tries.append((_mediastinal_contact(tissue[box], mask, side), attempt, moved, box, mask))
        if tries[-1][0] >= 0.15:
            break
    _, _, centre, box, mask = max(tries, key=lambda found: (found[0], -found[1]))
    voxels = np.nonzero(mask)
    if voxels[0].size == 0:
        raise ValueError("no room for the tumour in the lung of this field of view")
    lo = [box[2].start, box[1].start, box[0].start]
    hu[box][voxels] = _tumour_hu(shape, layout, centre, lo, voxels, diameter_mm)
    tissue[box][voxels] = _T.TUMOUR
    return box, mask, np.array(lo, dtype=np.float64) + _central_voxel(voxels)


def _central_voxel(voxels: tuple[np.ndarray, ...]) -> np.ndarray:
    """(x, y, z) of the centroid of the voxels, or of the voxel nearest to it if it falls outside
    (a lobulated mass clipped by the mediastinum need not be convex): a point in the tumour."""
    points = np.column_stack(voxels[::-1]).astype(np.float64)
    if len(points) == 0:
        return np.zeros(3)
    centroid = points.mean(axis=0)
    nearest = points[np.argmin(((points - centroid) ** 2).sum(axis=1))]
    return centroid if np.all(np.abs(nearest - centroid) <= 0.5) else nearest
