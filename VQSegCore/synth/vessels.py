"""Pulmonary vessels: branching, tortuous 3D trees grown from each hilum."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from VQSegCore.synth.layout import _LUNG_HEIGHT, _Layout
from VQSegCore.synth.maths import _unit_rows
from VQSegCore.synth.organs import _HILUM
from VQSegCore.synth.tissues import _LUNG_REGION, _T

_VESSEL_HU = 40.0
_VENOUS_HILUM = {+1: (38.0, 16.0, 0.44), -1: (-38.0, 16.0, 0.44)}


def _deflect(directions: np.ndarray, angles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turn unit vectors (n, 3) by the given angles towards random perpendicular directions."""
    r = rng.standard_normal(directions.shape)
    perp = _unit_rows(r - directions * (r * directions).sum(axis=1, keepdims=True))
    return _unit_rows(directions * np.cos(angles)[:, None] + perp * np.sin(angles)[:, None])


class _LungLookup:
    """Whether reference-mm points (n, 3: x, y, height) fall in the drawn lung region."""

    def __init__(self, layout: _Layout, tissue: np.ndarray):
        self.layout, self.tissue = layout, tissue
        self.is_lung = np.zeros(256, dtype=bool)
        self.is_lung[list(_LUNG_REGION)] = True

    def __call__(self, points: np.ndarray) -> np.ndarray:
        i, j, k = np.rint(self.layout.ref_to_index(points)).astype(np.int64).T
        nz, ny, nx = self.tissue.shape
        inside = (i >= 0) & (i < nx) & (j >= 0) & (j < ny) & (k >= 0) & (k < nz)
        found = np.zeros(len(points), dtype=bool)
        found[inside] = self.is_lung[self.tissue[k[inside], j[inside], i[inside]]]
        return found


def _spread_lung_targets(rng: np.random.Generator, in_lung: _LungLookup, side: int,
                         count: int) -> np.ndarray:
    """Points spread over one lung (farthest-point choice) for the main vessels to head for."""
    candidates = np.column_stack([
        side * rng.uniform(10.0, 150.0, 800), rng.uniform(-100.0, 100.0, 800),
        rng.uniform(0.0, _LUNG_HEIGHT, 800),
    ])
    candidates = candidates[in_lung(candidates)]
    if len(candidates) == 0:
        return candidates
    chosen = [0]
    distance = np.linalg.norm(candidates - candidates[0], axis=1)
    for _ in range(min(count, len(candidates)) - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(candidates - candidates[chosen[-1]], axis=1))
    return candidates[chosen]


@dataclass
class _Branches:
    """Vessel branches about to grow one segment each (all arrays share their first axis)."""

    start: np.ndarray  # (n, 3) reference mm
    direction: np.ndarray  # (n, 3) unit
    radius: np.ndarray  # (n,) reference mm
    target: np.ndarray  # (n, 3); NaN where the branch heads nowhere in particular
    depth: np.ndarray  # (n,) segments since the root

    def take(self, keep: np.ndarray) -> _Branches:
        return _Branches(self.start[keep], self.direction[keep], self.radius[keep],
                         self.target[keep], self.depth[keep])

    @staticmethod
    def concat(parts: list[_Branches]) -> _Branches:
        return _Branches(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in ("start", "direction", "radius", "target", "depth")))


_SEGMENT_STEPS = 4  # straight pieces per segment: enough to look tortuous


def _tortuous_segments(rng: np.random.Generator, b: _Branches) -> np.ndarray:
    """(n, steps + 1, 3) gently wandering polylines, pulled towards each branch's target."""
    length = (6.0 + 5.0 * b.radius) * rng.uniform(0.75, 1.25, len(b.radius))
    pull = np.nan_to_num(_unit_rows(b.target - b.start))  # zero where there is no target
    heading = _unit_rows(b.direction + 0.8 * pull)
    wander = np.cumsum(rng.standard_normal((len(length), _SEGMENT_STEPS, 3)) * 0.15, axis=1)
    steps = _unit_rows(heading[:, None, :] + wander) * (length / _SEGMENT_STEPS)[:, None, None]
    points = np.empty((len(length), _SEGMENT_STEPS + 1, 3))
    points[:, 0] = b.start
    points[:, 1:] = b.start[:, None, :] + np.cumsum(steps, axis=1)
    return points


def _grow_vessel_tree(rng: np.random.Generator, in_lung: _LungLookup, root: np.ndarray,
                      targets: np.ndarray, trunk_radius: float, min_radius: float) -> list:
    """Segments of one tree, one generation at a time: [(polylines (n, k, 3), radii (n,)), ...].

    Each main vessel heads for one target; side branches leave at an angle and bend away from
    the hilum, so the tree fills the lung. A segment that would leave the lung is retried once
    in another direction, then dropped with its subtree.
    """
    n = len(targets)
    grow = _Branches(start=np.repeat(root[None], n, 0), direction=_unit_rows(targets - root),
                     radius=trunk_radius * rng.uniform(0.8, 1.1, n), target=targets.astype(float),
                     depth=np.zeros(n, dtype=int))
    generations = []
    while len(grow.radius):
        points = _tortuous_segments(rng, grow)
        lost = (grow.depth >= 2) & ~in_lung(points[:, -1])
        if lost.any():
            retry = grow.take(lost)
            retry.direction = _deflect(retry.direction, np.full(len(retry.radius), 0.7), rng)
            retry.target[:] = np.nan
            points[lost] = _tortuous_segments(rng, retry)
            grow.target[lost] = np.nan
            lost[lost] = ~in_lung(points[lost, -1])
        grow, points = grow.take(~lost), points[~lost]
        generations.append((points, grow.radius))

        end = points[:, -1]
        heading = _unit_rows(points[:, -1] - points[:, -2])
        arrived = np.linalg.norm(grow.target - end, axis=1) < 10.0  # NaN compares False
        target = np.where(arrived[:, None], np.nan, grow.target)
        outward = _unit_rows(end - root)
        count = len(end)
        carry_on = _Branches(end, heading, grow.radius * rng.uniform(0.8, 0.9, count), target,
                             grow.depth + 1)
        sides = []
        for share in (1.0, 0.5):  # one side branch each, a second one for half of them
            has = rng.random(count) < share
            angle = rng.uniform(0.5, 1.1, count)
            direction = _unit_rows(_deflect(heading, angle, rng) + 0.3 * outward)
            sides.append(_Branches(end, direction, grow.radius * rng.uniform(0.4, 0.7, count),
                                   np.full((count, 3), np.nan), grow.depth + 1).take(has))
        grow = _Branches.concat([carry_on, *sides])
        grow = grow.take(grow.radius >= min_radius)
    return generations


def _vessel_trees(layout: _Layout, rng: np.random.Generator, tissue: np.ndarray) -> list:
    """Pulmonary arteries from each hilum and pulmonary veins from near the left atrium."""
    in_lung = _LungLookup(layout, tissue)
    generations = []
    for side in (-1, +1):
        for (hx, hy, ht), count in ((_HILUM[side], 10), (_VENOUS_HILUM[side], 8)):
            root = np.array([hx, hy, ht * _LUNG_HEIGHT])
            targets = _spread_lung_targets(rng, in_lung, side, count)
            if len(targets):
                generations += _grow_vessel_tree(rng, in_lung, root, targets, 4.0, 0.45)
    return generations


def _vessel_samples(layout: _Layout, generations) -> tuple[np.ndarray, np.ndarray]:
    """Voxel-index centres densely sampled along every segment, and the radius (mm) at each."""
    starts = np.concatenate([p[:, :-1].reshape(-1, 3) for p, _ in generations])
    ends = np.concatenate([p[:, 1:].reshape(-1, 3) for p, _ in generations])
    radii = np.concatenate([np.repeat(r, p.shape[1] - 1) for p, r in generations]) * layout.scale_xy
    a, b = layout.ref_to_index(starts), layout.ref_to_index(ends)
    spacing = np.array(layout.spacing)
    length_mm = np.linalg.norm((b - a) * spacing, axis=1)
    step_mm = np.maximum(0.5 * radii, 0.45 * spacing.min())
    counts = np.maximum(1, np.ceil(length_mm / step_mm).astype(int))
    piece = np.repeat(np.arange(len(counts)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    frac = (np.arange(counts.sum()) - first) / counts[piece]
    centres = a[piece] + (b[piece] - a[piece]) * frac[:, None]
    return np.rint(centres).astype(np.int64), radii[piece]


def _ball_offsets(radius_mm: float, spacing) -> np.ndarray:
    """(k, 3) voxel offsets (x, y, z) within an anisotropic ball; at least the centre voxel."""
    reach = [int(radius_mm / s) for s in spacing]
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    inside = ((grid * np.array(spacing)) ** 2).sum(1) <= radius_mm ** 2 + 1e-6
    return grid[inside]


def _paint_vessels(layout: _Layout, generations, tissue: np.ndarray, hu: np.ndarray) -> None:
    centres, radii = _vessel_samples(layout, generations)
    nz, ny, nx = layout.shape
    voxel_area = float(np.prod(layout.spacing)) ** (2 / 3)
    flat_tissue, flat_hu = tissue.reshape(-1), hu.reshape(-1)
    bins = np.round(radii / 0.2).astype(int)
    # Thickest first: thin branches never repaint a trunk with their fainter partial-volume value.
    for b in np.unique(bins)[::-1]:
        radius = max(b, 1) * 0.2
        ball = _ball_offsets(radius, layout.spacing)
        voxels = (centres[bins == b][:, None, :] + ball[None]).reshape(-1, 3)
        x, y, z = voxels.T
        inside = (x >= 0) & (x < nx) & (y >= 0) & (y < ny) & (z >= 0) & (z < nz)
        flat = (z[inside] * ny + y[inside]) * nx + x[inside]
        flat = flat[flat_tissue[flat] == _T.LUNG]
        # A vessel thinner than a voxel only partly fills it (partial volume).
        fill = min(1.0, math.pi * radius * radius / voxel_area)
        lung = flat_hu[flat].astype(np.float32)
        flat_hu[flat] = np.rint(lung + fill * (_VESSEL_HU - lung)).astype(np.int16)
        flat_tissue[flat] = _T.LUNG_VESSEL
