"""Crop a CT to the patient's body before inference: air around the body and the table carry no tumour.

    box = body_box(image)     # IndexBox, or None when no body was found (then the whole image is used)

The body is the largest connected component above -500 HU, found on a volume shrunk 4x in-plane
and 2x across slices (fast, and small gaps such as the table's do not join it), then grown back
to full resolution with a margin. The margin keeps the lung boundary well inside the crop.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from VQSegCore.infer.roi import IndexBox

BODY_THRESHOLD_HU = -500.0
MARGIN_MM = 10.0
SHRINK = (4, 4, 2)
# A "body" smaller than this fraction of the image is noise or a phantom without body: keep the whole image.
MIN_BODY_FRACTION = 0.01


def body_box(image: sitk.Image, threshold_hu: float = BODY_THRESHOLD_HU, margin_mm: float = MARGIN_MM) -> IndexBox | None:
    size = np.asarray(image.GetSize())
    factors = [int(min(f, max(1, n // 8))) for f, n in zip(SHRINK, size)]
    small = sitk.BinShrink(image, factors)
    foreground = sitk.BinaryThreshold(small, lowerThreshold=float(threshold_hu), upperThreshold=1e30, insideValue=1, outsideValue=0)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(foreground), sortByObjectSize=True)
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(components)
    if 1 not in statistics.GetLabels():
        return None
    if statistics.GetNumberOfPixels(1) < MIN_BODY_FRACTION * np.prod(small.GetSize()):
        return None
    box = statistics.GetBoundingBox(1)  # (start i, j, k, size i, j, k) on the shrunk grid
    start_small, size_small = np.asarray(box[:3]), np.asarray(box[3:])
    margin = np.ceil(margin_mm / np.asarray(image.GetSpacing())).astype(int)
    start = np.clip(start_small * factors - margin, 0, size)
    stop = np.clip((start_small + size_small) * np.asarray(factors) + margin, 0, size)
    # BinShrink drops the last partial bin: a body touching the far edge reaches it.
    stop = np.where(start_small + size_small >= np.asarray(small.GetSize()), size, stop)
    return IndexBox(tuple(int(v) for v in start), tuple(int(v) for v in stop))
