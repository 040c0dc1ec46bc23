"""Out-of-distribution score from the codebook: how far a volume's tokens lie from their codes.

A model trained on chest CT has codes that fit chest-CT tokens; an MR image, a head scan or a
wrongly windowed image produces tokens far from every code. The score is the volume's mean squared
quantization distance (token to nearest code), compared with the same statistic over the training
volumes, stored in the model card as `ood_reference` when training ends:

    reference = reference_from_distances([0.021, 0.019, ...])   # one mean per training volume
    score = ood_score(0.08, reference)  # OodScore(distance=0.08, ratio=3.9, ..., warning="...")

`ratio` is the distance over the training median; the warning threshold is the larger of 1.5x the
largest training value and the training mean + 4 standard deviations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

METRIC = "mean_quantization_distance"
MAX_FACTOR = 1.5
STD_FACTOR = 4.0


@dataclass(frozen=True)
class OodScore:
    distance: float  # this volume's mean token-to-code squared distance
    ratio: float  # distance / training median (about 1 for a typical training volume)
    threshold: float  # distances above this draw the warning
    warning: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def reference_from_distances(distances) -> dict:
    values = np.asarray([float(d) for d in distances], dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("the OOD reference needs at least one finite distance")
    mean, std = float(values.mean()), float(values.std())
    return {
        "metric": METRIC, "volumes": int(values.size), "mean": mean, "std": std, "median": float(np.median(values)),
        "min": float(values.min()), "max": float(values.max()),
        "threshold": max(MAX_FACTOR * float(values.max()), mean + STD_FACTOR * std),
    }


def ood_score(distance: float, reference: dict | None) -> OodScore | None:
    """None when the model card holds no reference (a model saved before training finished)."""
    if not reference or reference.get("metric") != METRIC:
        return None
    median = float(reference["median"]) or 1e-12
    threshold = float(reference["threshold"])
    ratio = float(distance) / median
    warning = None
    if distance > threshold:
        warning = (f"this image looks unlike the model's training data (codebook distance {ratio:.1f}x the training median, "
                   f"threshold {threshold / median:.1f}x): check the modality, body region and intensities; "
                   "treat the segmentation with caution")
    return OodScore(float(distance), ratio, threshold, warning)
