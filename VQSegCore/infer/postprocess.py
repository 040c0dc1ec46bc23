"""Optional clean-up of a label map: drop connected components smaller than a volume, per class.

    labels, removed = remove_small_components(labels, spacing_zyx, min_ml=0.5, values=(1,))

Components are 26-connected (any shared corner joins voxels). Removed voxels become background.
Off by default: a real small lesion is as small as a speck of noise, so the user chooses.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def remove_small_components(labels: np.ndarray, spacing_zyx, min_ml: float, values) -> tuple[np.ndarray, dict[int, int]]:
    """(cleaned labels, {value: components removed}); `labels` is not modified."""
    if min_ml <= 0:
        return labels, {int(v): 0 for v in values}
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    min_voxels = max(1, int(np.ceil(min_ml / voxel_ml - 1e-9)))
    cleaned = labels.copy()
    removed = {}
    structure = np.ones((3, 3, 3), dtype=bool)
    for value in values:
        components, count = ndimage.label(labels == value, structure=structure)
        if count == 0:
            removed[int(value)] = 0
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        small = np.flatnonzero(sizes < min_voxels)
        small = small[small > 0]
        cleaned[np.isin(components, small)] = 0
        removed[int(value)] = int(small.size)
    return cleaned, removed
