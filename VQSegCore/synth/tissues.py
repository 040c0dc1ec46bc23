"""Tissues and their CT numbers (non-contrast CT), and the groups of tissues that matter."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class _T(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    LUNG = 3
    MED_SOFT = 4  # mediastinal soft tissue
    MED_FAT = 5
    HEART = 6
    BLOOD = 7  # great vessels, no contrast
    AIRWAY = 8  # trachea and main bronchi
    CORTICAL = 9
    TRABECULAR = 10
    DISC = 11
    CSF = 12
    CARTILAGE = 13
    LIVER = 14
    ABDOMEN = 15
    LUNG_VESSEL = 16
    LOBAR_AIRWAY = 17  # bronchus lumen inside the lung
    BRONCHIAL_WALL = 18
    THYROID = 19
    TUMOUR = 20


_HU_BY_TISSUE = {
    _T.AIR: -1000, _T.FAT: -100, _T.MUSCLE: 40, _T.LUNG: -850, _T.MED_SOFT: 30,
    _T.MED_FAT: -90, _T.HEART: 40, _T.BLOOD: 40, _T.AIRWAY: -990, _T.CORTICAL: 750,
    _T.TRABECULAR: 280, _T.DISC: 85, _T.CSF: 20, _T.CARTILAGE: 130, _T.LIVER: 58,
    _T.ABDOMEN: 38, _T.LUNG_VESSEL: 40, _T.LOBAR_AIRWAY: -980, _T.BRONCHIAL_WALL: 30,
    _T.THYROID: 90, _T.TUMOUR: 40,
}
_HU_LUT = np.array([_HU_BY_TISSUE[t] for t in _T], dtype=np.int16)

# What the tumour may grow into: lung parenchyma and what runs through it. The mediastinum is
# not in the list, so the tumour's medial surface stops exactly at the mediastinal border.
_LUNG_REGION = (_T.LUNG, _T.LUNG_VESSEL, _T.LOBAR_AIRWAY, _T.BRONCHIAL_WALL)
_MEDIASTINUM = (_T.MED_SOFT, _T.MED_FAT, _T.HEART, _T.BLOOD, _T.AIRWAY)


def _is_any(tissue: np.ndarray, classes) -> np.ndarray:
    found = tissue == classes[0]
    for cls in classes[1:]:
        found |= tissue == cls
    return found
