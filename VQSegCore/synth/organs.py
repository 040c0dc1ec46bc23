"""Soft tissue of one axial slice: abdomen under the diaphragm, lungs, mediastinum, heart, great
vessels and airways. Each function paints over what the earlier ones drew.
"""

from __future__ import annotations

import math

import numpy as np

from VQSegCore.synth.layout import _LUNG_HEIGHT, _Layout, _Window
from VQSegCore.synth.maths import _lerp, _smooth_bump
from VQSegCore.synth.shapes import _ellipse, _ellipse_r2, _paint, _tube
from VQSegCore.synth.tissues import _T
from VQSegCore.synth.torso import _Cavity

_CARINA_T = 0.66
_HILUM = {+1: (44.0, 2.0, 0.57), -1: (-44.0, 2.0, 0.57)}  # (x, y, t) per side; +1 = left


def _dome_r2(layout: _Layout, win: _Window, side: int, t: float) -> np.ndarray | None:
    """Normalised radius of the hemidiaphragm's dome cut at height t (None above its top)."""
    top = 0.24 if side < 0 else 0.20  # the right hemidiaphragm sits higher, on the liver
    if t >= top:
        return None
    grow = math.sqrt((top - t) / 0.22)
    return _ellipse_r2(layout, win, side * 55.0, -15.0, 80.0 * grow, 95.0 * grow)


def _paint_abdomen(layout: _Layout, cavity: _Cavity, t: float, tissue: np.ndarray) -> None:
    """Below the domes: liver on the right, stomach and spleen on the left."""
    for side, organ in ((-1, _T.LIVER), (+1, _T.ABDOMEN)):
        dome = _dome_r2(layout, cavity.win, side, t)
        if dome is not None:
            _paint(tissue, (cavity.win, cavity.inside & (dome <= 1.0)), organ)
    bubble = _smooth_bump(t, 0.03, 0.16)
    if bubble > 0.2:  # gas in the gastric fundus
        _paint(tissue, _ellipse(layout, 62.0, -8.0, 24.0 * bubble, 14.0 * bubble), _T.AIR,
               over=(_T.ABDOMEN,))


def _paint_lungs(layout: _Layout, cavity: _Cavity, t: float, tissue: np.ndarray) -> None:
    """Each lung fills its half of the cavity above the diaphragm, up to a dome at the apex."""
    apex = 1.0 if t <= 0.8 else _smooth_bump(t, 0.58, 1.02)
    if apex <= 0.0:
        return
    win = cavity.win
    x_sign = np.sign(layout.x_ref[win[1]])[None, :]
    for side in (-1, +1):
        mask = cavity.inside & (x_sign == side)
        mask &= _ellipse_r2(layout, win, side * 0.5 * cavity.half_x, 4.0,
                            0.62 * cavity.half_x * apex, 1.1 * cavity.half_y * apex) <= 1.0
        dome = _dome_r2(layout, win, side, t)
        if dome is not None:
            mask &= dome > 1.0
        tissue[win][mask] = _T.LUNG


def _paint_mediastinum(layout: _Layout, cavity: _Cavity, t: float, tissue: np.ndarray) -> None:
    """A fatty envelope between the lungs, narrow in front; the organs are painted into it."""
    if not 0.12 < t < 1.02:
        return
    width = 14.0 + 8.0 * _smooth_bump(t, 0.38, 0.78)
    envelope = _ellipse_r2(layout, cavity.win, 0.0, -6.0, width, 94.0) <= 1.0
    _paint(tissue, (cavity.win, envelope & cavity.inside), _T.MED_FAT, over=(_T.LUNG, _T.MUSCLE))
    if 0.5 < t < 0.66:  # subcarinal lymph node
        _paint(tissue, _ellipse(layout, 2.0, 26.0, 9.0, 6.0), _T.MED_SOFT)


def _paint_heart(layout: _Layout, t: float, tissue: np.ndarray) -> None:
    """Anterior-left in the lower chest, its long axis towards the apex; pericardial fat."""
    size = _smooth_bump(t, 0.03, 0.53)
    if size <= 0.0:
        return
    centre, half, angle = (20.0, -30.0), (60.0 * size, 44.0 * size), -35.0
    _paint(tissue, _ellipse(layout, *centre, half[0] + 6.0, half[1] + 4.0, angle), _T.MED_FAT)
    _paint(tissue, _ellipse(layout, *centre, *half, angle), _T.HEART)


def _paint_lying_tube(layout: _Layout, tissue: np.ndarray, t: float, t_centre: float,
                      points, radius: float) -> None:
    """Cut through a vessel that runs within the axial plane at height t_centre."""
    cut = _smooth_bump(t, t_centre - radius / _LUNG_HEIGHT, t_centre + radius / _LUNG_HEIGHT)
    if cut > 0.2:
        _paint(tissue, _tube(layout, points, radius * cut), _T.BLOOD)


def _paint_great_vessels(layout: _Layout, t: float, tissue: np.ndarray) -> None:
    """Aorta, pulmonary arteries, venae cavae and the vessels of the neck (no contrast)."""
    blood = _T.BLOOD
    # Right pulmonary artery, behind the ascending aorta; left one over the left main bronchus.
    _paint_lying_tube(layout, tissue, t, 0.58, [(14, -30), (-8, -8), (-42, 2)], 9.0)
    _paint_lying_tube(layout, tissue, t, 0.615, [(18, -34), (30, -14), (42, 2)], 10.0)
    if 0.47 < t < 0.62:  # pulmonary trunk
        _paint(tissue, _ellipse(layout, 18.0, -36.0, 13.0, 13.0), blood)
    if 0.44 < t < 0.78:  # ascending aorta
        _paint(tissue, _ellipse(layout, -6.0, -22.0, 15.0, 15.0), blood)
    # Aortic arch, passing left of the trachea.
    _paint_lying_tube(layout, tissue, t, 0.795, [(-6, -22), (12, -16), (26, 6), (22, 36)], 12.0)
    if t < 0.8:  # descending aorta
        _paint(tissue, _ellipse(layout, 22.0, 38.0, 12.0, 12.0), blood)
    if 0.52 < t < 0.92:  # superior vena cava, then the right brachiocephalic vein
        _paint(tissue, _ellipse(layout, -30.0, -20.0, 10.0, 10.0), blood)
    # Left brachiocephalic vein crossing in front of the arch branches.
    _paint_lying_tube(layout, tissue, t, 0.87, [(30, -40), (-28, -24)], 7.0)
    if 0.82 < t < 1.12:  # arch branches: brachiocephalic, left carotid, left subclavian
        for cx, cy, r in ((-12, -14, 7.0), (4, -14, 5.0), (20, -4, 6.0)):
            _paint(tissue, _ellipse(layout, cx, cy, r, r), blood)
    if t >= 1.12:  # carotids and jugulars in the neck, thyroid lobes beside the trachea
        for side in (-1, +1):
            _paint(tissue, _ellipse(layout, side * 16.0, 4.0, 8.0, 11.0), _T.THYROID)
            _paint(tissue, _ellipse(layout, side * 28.0, 6.0, 5.0, 5.0), blood)
            _paint(tissue, _ellipse(layout, side * 38.0, -2.0, 8.0, 6.0), blood)
    if t < 0.75:  # azygos vein
        _paint(tissue, _ellipse(layout, -12.0, 42.0, 4.0, 4.0), blood)
    if t < 0.22:  # inferior vena cava
        _paint(tissue, _ellipse(layout, -20.0, 16.0, 12.0, 11.0), blood)


def _paint_airways(layout: _Layout, t: float, tissue: np.ndarray) -> None:
    """Oesophagus, trachea, main bronchi in the mediastinum and lobar bronchi in the lungs."""
    if t < 1.4:  # oesophagus
        _paint(tissue, _ellipse(layout, 5.0, 29.0, 8.0, 7.0), _T.MUSCLE)
    if t >= _CARINA_T:  # trachea: flattened at the back, 2 mm wall
        _paint(tissue, _ellipse(layout, 0.0, 12.0, 11.5, 10.5), _T.MED_SOFT)
        _paint(tissue, _ellipse(layout, 0.0, 12.0, 9.5, 8.5), _T.AIRWAY)
        return
    for side in (-1, +1):
        hx, hy, ht = _HILUM[side]
        ht += 0.015 * side  # the right main bronchus is shorter and steeper
        if ht < t < _CARINA_T:  # main bronchi, from the carina to the hilum
            u = (_CARINA_T - t) / (_CARINA_T - ht)
            cx, cy = _lerp((side * 4.0, 12.0), (hx, hy + 6.0), u)
            r = 7.0 - 2.0 * u
            _paint(tissue, _ellipse(layout, cx, cy, r + 1.5, r + 1.5), _T.MED_SOFT)
            _paint(tissue, _ellipse(layout, cx, cy, r, r), _T.AIRWAY)
        # Lobar bronchi run on inside the lung: upper lobe upwards, lower lobe downwards.
        for end, r in (((side * 70.0, 0.0, ht + 0.14), 3.5), ((side * 62.0, 24.0, ht - 0.18), 4.0)):
            u = (t - ht) / (end[2] - ht)
            if 0.0 < u < 1.0:
                cx, cy = _lerp((hx, hy + 6.0), end[:2], u)
                rr = r * (1.0 - 0.4 * u)
                _paint(tissue, _ellipse(layout, cx, cy, rr + 1.2, rr + 1.2), _T.BRONCHIAL_WALL,
                       over=(_T.LUNG,))
                _paint(tissue, _ellipse(layout, cx, cy, rr, rr), _T.LOBAR_AIRWAY,
                       over=(_T.BRONCHIAL_WALL,))
