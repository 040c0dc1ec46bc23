"""How much a clinician changed the model's draft: voxels per class that the correction flipped.

    edited_voxels(label, draft, LUNG_TUMOUR)   # {"lung_tumour": 1234}

A voxel counts for class v when it is v in exactly one of the two maps (added or removed from v).
"""

from __future__ import annotations

import numpy as np

from VQSegCore.classes import ClassTable


def edited_voxels(label: np.ndarray, draft: np.ndarray, classes: ClassTable) -> dict[str, int]:
    return {c.id: int(np.count_nonzero((label == c.value) != (draft == c.value))) for c in classes.classes}
