"""The torso outline and the thoracic cavity (with the rings the ribs and scapulae run in)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from VQSegCore.synth.layout import (
    _LUNG_HEIGHT,
    _TORSO_HALF_DEPTH,
    _TORSO_HALF_WIDTH,
    _Layout,
    _Window,
)
from VQSegCore.synth.shapes import _ellipse_r2
from VQSegCore.synth.tissues import _T


@dataclass(frozen=True, eq=False)
class _Torso:
    half_width: float  # reference mm, seeded
    half_depth: float
    chest_wall: np.ndarray  # (ny, nx) uint8: air, subcutaneous fat, muscle; below the shoulders

    def outline(self, layout: _Layout, t: float) -> np.ndarray:
        """Air, fat and muscle of slice height t: the chest, narrowing to the neck above the apex."""
        neck = min(max((t - 1.04) / 0.16, 0.0), 1.0)
        if neck == 0.0:
            return self.chest_wall
        neck = neck * neck * (3 - 2 * neck)
        return _body_outline(layout, self.half_width * (1 - 0.58 * neck),
                             self.half_depth * (1 - 0.42 * neck))


def _superellipse(layout: _Layout, a: float, b: float) -> np.ndarray:
    x, y = layout.x_ref, layout.y_ref
    py = np.where(y > 0, 3.4, 2.4)  # flatter at the back, where the patient lies on the table
    return (np.abs(x / a) ** 2.6)[None, :] + (np.abs(y / b) ** py)[:, None] <= 1.0


def _body_outline(layout: _Layout, half_width: float, half_depth: float) -> np.ndarray:
    body = np.full((layout.y_ref.size, layout.x_ref.size), _T.AIR, dtype=np.uint8)
    body[_superellipse(layout, half_width, half_depth)] = _T.FAT
    body[_superellipse(layout, half_width - 13.0, half_depth - 11.0)] = _T.MUSCLE
    return body


def _build_torso(layout: _Layout, rng: np.random.Generator) -> _Torso:
    width, depth = (float(f) for f in rng.uniform(0.96, 1.04, size=2))
    half_w, half_d = _TORSO_HALF_WIDTH * width, _TORSO_HALF_DEPTH * depth
    return _Torso(half_width=half_w, half_depth=half_d,
                  chest_wall=_body_outline(layout, half_w, half_d))


_CAVITY_CENTRE_Y = -2.0  # centre of the thoracic cavity (inside the ribs)
_CHEST_WALL_MM = (28.0, 30.0)  # torso outline to cavity: at the sides, front and back
_VERTEBRA_PERIOD = _LUNG_HEIGHT / 11.5  # reference mm between vertebrae (and between ribs)
_RIB_RING = (1.0, 1.13)  # normalised cavity radii spanned by the ribs
_SCAPULA_RING = (1.17, 1.23)
_CHEST_WALL_REACH = _SCAPULA_RING[1] + 0.02


@dataclass(frozen=True, eq=False)
class _Cavity:
    """The thoracic cavity (inside the ribs) of one slice, evaluated on a window around it."""

    win: _Window
    r2: np.ndarray  # normalised squared radius of the cavity ellipse; <= 1 inside
    inside: np.ndarray
    half_x: float
    half_y: float
    rib_pixels: np.ndarray  # flat in-slice indices of the ring the ribs run in
    rib_radius: np.ndarray  # normalised radius of each of those pixels
    rib_angle: np.ndarray  # 0 at the spine, 1 at the sternum
    rib_slope: np.ndarray  # how much lower the rib band lies there: ribs slope down anteriorly
    scapula_pixels: np.ndarray
    pectoral_fat_pixels: np.ndarray  # fat plane between the pectoral muscles and the ribs

    @staticmethod
    def half_axes(torso: _Torso, t: float) -> tuple[float, float]:
        # The rib cage is widest at the base and narrows towards the first ribs. Rounded to
        # 0.25 mm so that neighbouring slices share one cached geometry.
        narrowing = min(max((t - 0.35) / 0.7, 0.0), 1.0)
        half_x = (torso.half_width - _CHEST_WALL_MM[0]) * (1 - 0.4 * narrowing ** 1.5)
        half_y = (torso.half_depth - _CHEST_WALL_MM[1]) * (1 - 0.15 * narrowing)
        return round(half_x * 4) / 4, round(half_y * 4) / 4

    @staticmethod
    def build(layout: _Layout, half_x: float, half_y: float) -> _Cavity:
        reach = _CHEST_WALL_REACH
        win = layout.window(-reach * half_x, reach * half_x, _CAVITY_CENTRE_Y - reach * half_y,
                            _CAVITY_CENTRE_Y + reach * half_y)
        r2 = _ellipse_r2(layout, win, 0.0, _CAVITY_CENTRE_Y, half_x, half_y)
        rows, cols = np.nonzero((r2 > _RIB_RING[0] ** 2) & (r2 < _CHEST_WALL_REACH ** 2))
        radius = np.sqrt(r2[rows, cols])
        x = layout.x_ref[win[1]][cols] / half_x
        y = (layout.y_ref[win[0]][rows] - _CAVITY_CENTRE_Y) / half_y
        angle = np.arctan2(np.abs(x), y) / np.float32(np.pi)
        flat = (rows + win[0].start) * layout.x_ref.size + cols + win[1].start
        rib = (radius < _RIB_RING[1]) & (angle > 0.1) & (angle < 0.93)
        scapula = ((radius > _SCAPULA_RING[0]) & (radius < _SCAPULA_RING[1])
                   & (angle > 0.17) & (angle < 0.42))
        pectoral_fat = (radius > 1.15) & (radius < 1.15 + 2.5 / half_y) & (angle > 0.58) & (angle < 0.9)
        return _Cavity(
            win=win, r2=r2, inside=r2 <= 1.0, half_x=half_x, half_y=half_y,
            rib_pixels=flat[rib], rib_radius=radius[rib], rib_angle=angle[rib],
            rib_slope=(3.2 * _VERTEBRA_PERIOD) * angle[rib] ** 1.3, scapula_pixels=flat[scapula],
            pectoral_fat_pixels=flat[pectoral_fat],
        )
