"""The anatomy of the whole volume: tissue classes and noise-free HU, one axial slice at a time.

Each slice is painted back to front: later structures cover earlier ones.
"""

from __future__ import annotations

import numpy as np

from VQSegCore.synth.layout import _LUNG_HEIGHT, _Layout
from VQSegCore.synth.organs import (
    _paint_abdomen,
    _paint_airways,
    _paint_great_vessels,
    _paint_heart,
    _paint_lungs,
    _paint_mediastinum,
)
from VQSegCore.synth.skeleton import _paint_chest_wall, _paint_spine
from VQSegCore.synth.tissues import _HU_LUT, _T
from VQSegCore.synth.torso import _Cavity, _Torso

_LUNG_HU_ANTERIOR, _LUNG_HU_POSTERIOR = -875.0, -815.0  # gravity: dependent lung is denser


def _lung_hu_by_row(layout: _Layout) -> np.ndarray:
    u = np.clip((layout.y_ref + 90.0) / 180.0, 0.0, 1.0)
    return (_LUNG_HU_ANTERIOR + (_LUNG_HU_POSTERIOR - _LUNG_HU_ANTERIOR) * u).astype(np.int16)


def _draw_anatomy(layout: _Layout, torso: _Torso) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes and noise-free HU of every voxel, built one axial slice at a time."""
    tissue = np.empty(layout.shape, dtype=np.uint8)
    hu = np.empty(layout.shape, dtype=np.int16)
    lung_hu = np.broadcast_to(_lung_hu_by_row(layout)[:, None], layout.shape[1:])
    cavities: dict[tuple[float, float], _Cavity] = {}
    for k in range(layout.shape[0]):
        height = layout.slice_height_ref(k)
        t = height / _LUNG_HEIGHT
        ts = tissue[k]
        ts[...] = torso.outline(layout, t)
        axes = _Cavity.half_axes(torso, t)
        if axes not in cavities:
            cavities[axes] = _Cavity.build(layout, *axes)
        cavity = cavities[axes]
        if t < 1.05:
            _paint_abdomen(layout, cavity, t, ts)
            _paint_lungs(layout, cavity, t, ts)
            _paint_mediastinum(layout, cavity, t, ts)
            _paint_heart(layout, t, ts)
        _paint_great_vessels(layout, t, ts)
        _paint_airways(layout, t, ts)
        _paint_spine(layout, height, ts)
        _paint_chest_wall(layout, cavity, t, height, ts)
        np.take(_HU_LUT, ts, out=hu[k], mode="clip")  # clip: no bounds checks, faster
        np.copyto(hu[k], lung_hu, where=ts == _T.LUNG)
    return tissue, hu
