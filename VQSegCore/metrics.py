"""Segmentation metrics per volume and class: Dice, Jaccard, HD95 and ASD in millimetres, and volumes.

Surface distances come from MONAI (`compute_hausdorff_distance`, `compute_average_surface_distance`):
the edge voxels of each mask, exact Euclidean distances in mm from the voxel spacing. HD95 is MONAI's
symmetric definition — the larger of the two directed 95th percentiles; ASD is symmetric — the mean
of the distances of both directions taken together.

Axis order: label arrays are [z, y, x] (`sitk.GetArrayFromImage`), so the pure functions take
`spacing_zyx`; `image_metrics` reverses SimpleITK's (x, y, z) spacing for you. The direction
matrix is a rotation and changes no distance, so only the spacing matters.

Empty masks, per class (the `status` of a `ClassMetrics`):
  both empty                      Dice 1  Jaccard 1  HD95 0    ASD 0    "both_empty"
  label non-empty, prediction not Dice 0  Jaccard 0  HD95 NaN  ASD NaN  "missed"
  prediction non-empty, label not Dice 0  Jaccard 0  HD95 NaN  ASD NaN  "false_positive"
  both non-empty                  computed                              "ok"
A missed tumour is a failure that is counted, never scored as a 0 mm (or any) distance. Summaries
average distances only over the volumes where they are defined, and count each status.

Speed: both masks are cropped to the box around their union plus a margin before MONAI sees them.
Distances do not change as long as no foreground is cut off, and a 512×512×300 CT with a 5 cm
tumour then takes a fraction of a second instead of converting the whole volume to float tensors.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from VQSegCore.classes import ClassTable, unexpected_values  # noqa: F401 - part of this module's API

STATUSES = ("ok", "both_empty", "missed", "false_positive")
FAILURES = ("missed", "false_positive")
SCORES = ("dice", "jaccard", "hd95_mm", "asd_mm")

# One voxel of margin keeps every edge voxel an edge (erosion sees background around it); two is slack.
CROP_MARGIN = 2


@dataclass(frozen=True)
class ClassMetrics:
    """How one class of one predicted volume agrees with its label."""

    status: str  # one of STATUSES
    dice: float
    jaccard: float
    hd95_mm: float  # NaN when undefined (one mask empty)
    asd_mm: float
    label_voxels: int
    prediction_voxels: int
    label_ml: float
    prediction_ml: float

    def to_dict(self) -> dict:
        return asdict(self)


def binary_metrics(prediction: np.ndarray, label: np.ndarray, spacing_zyx: Sequence[float]) -> ClassMetrics:
    """Metrics of one binary mask against another; arrays [z, y, x], spacing in mm in the same order."""
    prediction, label = np.asarray(prediction, dtype=bool), np.asarray(label, dtype=bool)
    if prediction.shape != label.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from label shape {label.shape}")
    if prediction.ndim != len(spacing_zyx):
        raise ValueError(f"{prediction.ndim}D masks need {prediction.ndim} spacings, got {len(spacing_zyx)}")
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    box = union_box(prediction, label, CROP_MARGIN)
    if box is None:
        return ClassMetrics("both_empty", 1.0, 1.0, 0.0, 0.0, 0, 0, 0.0, 0.0)
    prediction, label = prediction[box], label[box]
    label_voxels, prediction_voxels = int(label.sum()), int(prediction.sum())
    volumes = dict(
        label_voxels=label_voxels, prediction_voxels=prediction_voxels,
        label_ml=label_voxels * voxel_ml, prediction_ml=prediction_voxels * voxel_ml,
    )
    if prediction_voxels == 0 or label_voxels == 0:
        status = "missed" if prediction_voxels == 0 else "false_positive"
        return ClassMetrics(status, 0.0, 0.0, math.nan, math.nan, **volumes)
    overlap = int(np.logical_and(prediction, label).sum())
    hd95, asd = surface_distances_mm(prediction, label, spacing_zyx)
    return ClassMetrics(
        "ok",
        dice=dice_score(prediction, label),
        jaccard=overlap / (prediction_voxels + label_voxels - overlap),
        hd95_mm=hd95, asd_mm=asd, **volumes,
    )


def dice_score(prediction: np.ndarray, label: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (the both_empty rule)."""
    prediction, label = np.asarray(prediction, dtype=bool), np.asarray(label, dtype=bool)
    denominator = int(prediction.sum()) + int(label.sum())
    return 1.0 if denominator == 0 else 2.0 * int(np.logical_and(prediction, label).sum()) / denominator


def surface_distances_mm(prediction: np.ndarray, label: np.ndarray, spacing_zyx: Sequence[float]) -> tuple[float, float]:
    """(HD95, symmetric ASD) in mm between two non-empty boolean masks, computed by MONAI."""
    # MONAI and torch take seconds to import: pay for them only when a distance is needed.
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    # MONAI wants one-hot [batch, class, *spatial]; one foreground channel, kept as "background".
    y_pred = np.ascontiguousarray(prediction, dtype=np.float32)[None, None]
    y = np.ascontiguousarray(label, dtype=np.float32)[None, None]
    spacing = [float(s) for s in spacing_zyx]
    with warnings.catch_warnings():
        # MONAI 1.5–1.6 warns about an argument its own code passes; nothing for a user to act on.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        hd95 = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=spacing)
        asd = compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True, spacing=spacing)
    return float(hd95.item()), float(asd.item())


def union_box(prediction: np.ndarray, label: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    """The slices of the box around `prediction | label` grown by `margin` voxels; None if both are empty."""
    union = np.logical_or(prediction, label)
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        occupied = np.flatnonzero(union.any(axis=others))
        if occupied.size == 0:
            return None
        box.append(slice(max(int(occupied[0]) - margin, 0), min(int(occupied[-1]) + 1 + margin, union.shape[axis])))
    return tuple(box)


def volume_metrics(prediction: np.ndarray, label: np.ndarray, spacing_zyx: Sequence[float], classes: ClassTable) -> dict[str, ClassMetrics]:
    """Metrics per class id for two label maps ([z, y, x] integer arrays on the same grid)."""
    prediction, label = np.asarray(prediction), np.asarray(label)
    if prediction.shape != label.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from label shape {label.shape}")
    for what, array in (("prediction", prediction), ("label", label)):
        if unknown := unexpected_values(array, classes):
            raise ValueError(f"the {what} holds label values {unknown} that the class table does not list (known: {classes.values})")
    return {c.id: binary_metrics(prediction == c.value, label == c.value, spacing_zyx) for c in classes.classes}


def image_metrics(prediction: sitk.Image, label: sitk.Image, classes: ClassTable) -> dict[str, ClassMetrics]:
    """`volume_metrics` for two SimpleITK label maps; the caller checks that they share a grid."""
    if prediction.GetSize() != label.GetSize():
        raise ValueError(f"prediction size {prediction.GetSize()} differs from label size {label.GetSize()}")
    spacing_zyx = tuple(reversed(label.GetSpacing()))  # GetSpacing() is (x, y, z); arrays are [z, y, x]
    return volume_metrics(sitk.GetArrayViewFromImage(prediction), sitk.GetArrayViewFromImage(label), spacing_zyx, classes)


def summarize(volumes: Sequence[dict[str, ClassMetrics]], classes: ClassTable) -> dict:
    """Per class: mean/median/std of each score over volumes and the count of each status; then the mean over classes.

    Dice and Jaccard average over every volume (a miss counts as 0); HD95 and ASD over the
    volumes where they are defined, and `n` says how many that was.
    """
    per_class = {c.id: _class_summary([volume[c.id] for volume in volumes]) for c in classes.classes}
    over_classes = {score: _nanmean([summary[score]["mean"] for summary in per_class.values()]) for score in SCORES}
    for status in STATUSES:
        over_classes[status] = sum(summary[status] for summary in per_class.values())
    over_classes["failures"] = sum(summary["failures"] for summary in per_class.values())
    return {"volumes": len(volumes), "classes": per_class, "mean_over_classes": over_classes}


def _class_summary(results: list[ClassMetrics]) -> dict:
    summary: dict = {score: _statistics([getattr(r, score) for r in results]) for score in SCORES}
    for status in STATUSES:
        summary[status] = sum(r.status == status for r in results)
    summary["failures"] = sum(r.status in FAILURES for r in results)
    return summary


def _statistics(values: list[float]) -> dict:
    defined = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if defined.size == 0:
        return {"mean": math.nan, "median": math.nan, "std": math.nan, "n": 0}
    # Population std (ddof=0): defined for a single volume too.
    return {"mean": float(defined.mean()), "median": float(np.median(defined)), "std": float(defined.std()), "n": int(defined.size)}


def _nanmean(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan
