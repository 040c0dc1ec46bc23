"""Held-out Dice: the one scoring path of training validation and the fine-tune gate.

    case = read_scored_case(spec_case)                    # the original image and label, read once
    dice, predicted = score_case(model, card, case, device="cpu")
    mean_dice({case_id: dice, ...})                      # the mean over cases

The model segments the case's original image exactly as `vqseg segment` does (`segment_volume`
with a default request: the model's own inference window, the CT crop, automatic precision), and
Dice is computed in 3D on the image's own grid for each class of the model's class table (1 when a
class is absent from both label and prediction), then averaged over the classes; cases count
equally in the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from VQSegCore.infer.segment import SegmentRequest, segment_volume
from VQSegCore.io import read_label_map, read_volume
from VQSegCore.metrics import dice_score


@dataclass(frozen=True)
class ScoredCase:
    id: str
    image: sitk.Image  # the case's image as read
    label: np.ndarray  # [z, y, x] label values on the image's grid


def read_scored_case(case) -> ScoredCase:
    """Read a labelled dataset case (`id`, `image`, `label` paths) for scoring."""
    image = read_volume(case.image).image
    label = sitk.GetArrayFromImage(read_label_map(case.label, reference=image, what=f"label of case {case.id}"))
    return ScoredCase(case.id, image, label)


def class_mean_dice(predicted: np.ndarray, label: np.ndarray, values) -> float:
    """Mean over the label `values` of the per-class 3D Dice."""
    return float(np.mean([dice_score(predicted == v, label == v) for v in values]))


def score_case(model, card: dict, case: ScoredCase, *, device: str = "cpu", cancel=None) -> tuple[float, np.ndarray]:
    """(mean Dice over the model's classes, predicted label array) of `model` on one case."""
    result = segment_volume(model, card, case.image, SegmentRequest(device=device), cancel=cancel)
    predicted = sitk.GetArrayFromImage(result.labels)
    return class_mean_dice(predicted, case.label, model.config.classes.values), predicted


def mean_dice(per_case: dict[str, float]) -> float:
    """The mean over cases; NaN when there is none."""
    return float(np.mean(list(per_case.values()))) if per_case else float("nan")
