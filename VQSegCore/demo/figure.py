"""One axial slice through the tumour: the CT, the truth and the contours before and after fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VQSegCore.atomic import atomic_output
from VQSegCore.demo.cases import DemoCase

LUNG_WINDOW_HU = (-1200.0, 300.0)
VIEW_MARGIN_MM = 40.0


def draw_before_after(case: DemoCase, before: Path, after: Path, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = sitk.ReadImage(str(case.image))
    ct = sitk.GetArrayFromImage(image)
    truth, first, second = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) > 0 for p in (case.label, before, after))
    k = int(np.argmax(truth.sum(axis=(1, 2))))  # the slice with the most tumour
    rows, columns = _view(truth[k], image.GetSpacing()[:2])

    figure, axis = plt.subplots(figsize=(5.2, 5.2), dpi=120)
    axis.imshow(ct[k][rows, columns], cmap="gray", vmin=LUNG_WINDOW_HU[0], vmax=LUNG_WINDOW_HU[1], interpolation="nearest")
    for mask, colour, name in ((truth, "#2ca02c", "truth"), (first, "#d62728", "before fine-tuning"),
                               (second, "#1f77b4", "after fine-tuning")):
        if mask[k][rows, columns].any():
            axis.contour(mask[k][rows, columns].astype(float), levels=[0.5], colors=[colour], linewidths=1.6)
        axis.plot([], [], color=colour, label=name)
    axis.legend(loc="lower right", fontsize=8, framealpha=0.8)
    axis.set_title(f"{case.name}, axial slice {k}", fontsize=9)
    axis.set_axis_off()
    figure.tight_layout()
    with atomic_output(path) as temp:
        figure.savefig(temp, format="png")
    plt.close(figure)
    return path


def _view(mask: np.ndarray, spacing_xy) -> tuple[slice, slice]:
    """Rows and columns around the tumour with a margin (the whole slice when it has no tumour)."""
    found = np.argwhere(mask)
    if found.size == 0:
        return slice(None), slice(None)
    margin = (int(VIEW_MARGIN_MM / spacing_xy[1]), int(VIEW_MARGIN_MM / spacing_xy[0]))
    low = np.maximum(found.min(axis=0) - margin, 0)
    high = np.minimum(found.max(axis=0) + margin + 1, mask.shape)
    return slice(int(low[0]), int(high[0])), slice(int(low[1]), int(high[1]))
