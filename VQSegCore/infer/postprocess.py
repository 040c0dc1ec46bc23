"""Clean-up of a label map by connected components, per class.

    labels, removed = remove_small_components(labels, spacing_zyx, min_ml=0.5, values=(1,))
    labels, removed = keep_components_touching(labels, field, values=(1,))   # removed: how many findings

Components are 26-connected (any shared corner joins voxels). Removed voxels become background.
Small components: off by default (a real small lesion is as small as a speck of noise, so the
user chooses). Touching a field: a finding is kept whole when any voxel of it lies in the field, so
a tumour that grows from the lung into the chest wall keeps its outer part.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


_STRUCTURE = np.ones((3, 3, 3), dtype=bool)


def keep_components_touching(labels: np.ndarray, field: np.ndarray, values) -> tuple[np.ndarray, int]:
    """(labels without the findings that have no voxel in `field`, how many findings were removed).

    A finding is a component of all foreground classes together, so one whose parts carry different
    classes is kept or removed whole. `labels` is not modified.
    """
    if field.shape != labels.shape:
        raise ValueError(f"field shape {field.shape} differs from the labels' {labels.shape}")
    components, count = ndimage.label(np.isin(labels, list(values)), structure=_STRUCTURE)
    touching = np.zeros(count + 1, dtype=bool)
    touching[np.unique(components[field])] = True
    outside = np.flatnonzero(~touching)
    outside = outside[outside > 0]
    dropped = np.isin(components, outside)
    cleaned = labels.copy()
    cleaned[dropped] = 0
    return cleaned, int(outside.size)


def remove_small_components(labels: np.ndarray, spacing_zyx, min_ml: float, values) -> tuple[np.ndarray, dict[int, int]]:
    """(cleaned labels, {value: components removed}); `labels` is not modified."""
    if min_ml <= 0:
        return labels, {int(v): 0 for v in values}
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    min_voxels = max(1, int(np.ceil(min_ml / voxel_ml - 1e-9)))
    cleaned = labels.copy()
    removed = {}
    for value in values:
        components, count = ndimage.label(labels == value, structure=_STRUCTURE)
        if count == 0:
            removed[int(value)] = 0
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        small = np.flatnonzero(sizes < min_voxels)
        small = small[small > 0]
        cleaned[np.isin(components, small)] = 0
        removed[int(value)] = int(small.size)
    return cleaned, removed
