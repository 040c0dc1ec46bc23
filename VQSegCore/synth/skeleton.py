"""Bone and chest wall: the spine, ribs, scapulae, sternum and clavicles of one axial slice, the fat
planes between the chest-wall muscles, and the speckle of the spine's trabecular bone.
"""

from __future__ import annotations

import numpy as np

from VQSegCore.synth.layout import _Layout
from VQSegCore.synth.maths import _smooth_bump
from VQSegCore.synth.shapes import _ellipse, _paint, _tube
from VQSegCore.synth.tissues import _HU_BY_TISSUE, _T
from VQSegCore.synth.torso import _CAVITY_CENTRE_Y, _VERTEBRA_PERIOD, _Cavity

_SPINE_Y = 62.0  # vertebral body centre


def _paint_spine(layout: _Layout, height_ref: float, tissue: np.ndarray) -> None:
    """Vertebral body (cortex and trabecular core, or a disc between vertebrae) and its arch."""
    _paint(tissue, _ellipse(layout, 0.0, _SPINE_Y, 26.0, 22.0), _T.MED_SOFT, over=(_T.LUNG,))
    in_disc = (height_ref / _VERTEBRA_PERIOD) % 1.0 < 0.18
    if in_disc:
        _paint(tissue, _ellipse(layout, 0.0, _SPINE_Y, 17.5, 16.0), _T.DISC)
    else:
        _paint(tissue, _ellipse(layout, 0.0, _SPINE_Y, 17.5, 16.0), _T.CORTICAL)
        _paint(tissue, _ellipse(layout, 0.0, _SPINE_Y, 15.0, 13.5), _T.TRABECULAR)
    # Posterior arch around the canal, spinous and transverse processes.
    _paint(tissue, _ellipse(layout, 0.0, _SPINE_Y + 30.0, 13.0, 12.0), _T.CORTICAL)
    _paint(tissue, _ellipse(layout, 0.0, _SPINE_Y + 30.0, 8.0, 7.5), _T.CSF)
    _paint(tissue, _ellipse(layout, 0.0, _SPINE_Y + 43.0, 4.0, 8.0), _T.CORTICAL)
    for side in (-1, +1):
        _paint(tissue, _ellipse(layout, side * 23.0, _SPINE_Y + 25.0, 11.0, 4.0, -20.0 * side),
               _T.CORTICAL)


def _paint_chest_wall(layout: _Layout, cavity: _Cavity, t: float, height_ref: float,
                            tissue: np.ndarray) -> None:
    """Fat planes, ribs (oblique cuts through bands that slope down anteriorly), scapulae,
    sternum and clavicles."""
    flat = tissue.reshape(-1)
    if 0.3 < t < 1.08:
        fat = cavity.pectoral_fat_pixels
        flat[fat[flat[fat] == _T.MUSCLE]] = _T.FAT
    axilla = _smooth_bump(t, 0.7, 1.1)
    if axilla > 0.0:  # axillary fat between the pectoral muscles and the scapula
        for side in (-1, +1):
            fat = _ellipse(layout, side * 1.2 * cavity.half_x, -8.0, 14.0 * axilla, 32.0 * axilla)
            _paint(tissue, fat, _T.FAT, over=(_T.MUSCLE,))
    if -0.2 < t < 1.08:
        band, thickness = 0.42, 9.0 / cavity.half_y
        phase = ((height_ref + cavity.rib_slope) / _VERTEBRA_PERIOD) % 1.0
        # Elliptical cross-section in (height, radius): rounded, tapering ends.
        e2 = (((phase - band / 2) / (band / 2)) ** 2
              + ((cavity.rib_radius - 1.01 - thickness / 2) / (thickness / 2)) ** 2)
        bone = e2 <= 1.0
        values = np.where(e2[bone] < 0.3, np.uint8(_T.TRABECULAR), np.uint8(_T.CORTICAL))
        values[cavity.rib_angle[bone] > 0.84] = _T.CARTILAGE
        flat[cavity.rib_pixels[bone]] = values
    if 0.62 < t < 1.1:
        flat[cavity.scapula_pixels] = _T.CORTICAL
    if 0.2 < t < 0.95:  # sternum
        sternum_y = _CAVITY_CENTRE_Y - cavity.half_y - 7.0
        _paint(tissue, _ellipse(layout, 0.0, sternum_y, 15.0, 6.5), _T.CORTICAL)
        _paint(tissue, _ellipse(layout, 0.0, sternum_y, 12.5, 4.0), _T.TRABECULAR)
    clavicle = _smooth_bump(t, 1.02, 1.08)
    if clavicle > 0.2:
        for side in (-1, +1):
            _paint(tissue, _tube(layout, [(side * 14, -92), (side * 60, -96), (side * 105, -70)],
                                 6.5 * clavicle), _T.CORTICAL)


def _roughen_bone(layout: _Layout, rng: np.random.Generator, tissue: np.ndarray,
                  hu: np.ndarray) -> None:
    """Speckle the trabecular bone of the spine so it does not look like flat paint."""
    rows, cols = layout.window(-20.0, 20.0, _SPINE_Y - 20.0, _SPINE_Y + 20.0)
    box = (slice(None), rows, cols)
    trabecular = tissue[box] == _T.TRABECULAR
    speckle = rng.normal(0.0, 70.0, size=int(trabecular.sum())).astype(np.float32)
    hu[box][trabecular] = np.clip(_HU_BY_TISSUE[_T.TRABECULAR] + speckle, 100, 600).astype(np.int16)
