"""The promotion gate: score parent and candidate on the same held-out cases; promote only without regression.

    scores = score_models({"parent": parent_dir, "candidate": candidate_dir}, held_out)
    verdict = decide(scores, margin=0.01)      # Verdict(promote=True/False, reason="...")

Dice is computed in 3D on each case's own grid (the same path as `vqseg segment`), averaged over
the class table, then over cases (VQSegCore.infer.scoring, which training validation uses too).
The candidate is promoted when its mean is at most `margin` below the parent's (default 1 Dice
point): fine-tuning on a clinician's corrections should not be blocked by noise, and a real loss is
caught.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from VQSegCore.cancel import NEVER_CANCELLED
from VQSegCore.dataset_spec import Case
from VQSegCore.infer.scoring import read_scored_case, score_case
from VQSegCore.model import load_model

DEFAULT_MARGIN = 0.01


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    parent_dice: float | None
    candidate_dice: float | None


def score_models(models: dict, cases: list[Case], device: str = "cpu", cancel=None) -> dict:
    """{model key: {case id: mean Dice over classes}} and the label/prediction arrays for the report."""
    loaded = {key: load_model(folder) for key, folder in models.items() if folder is not None}
    scores: dict[str, dict[str, float]] = {key: {} for key in loaded}
    predictions: dict[str, dict[str, np.ndarray]] = {key: {} for key in loaded}
    for case in cases:
        scored = read_scored_case(case)
        for key, (model, card) in loaded.items():
            (cancel or NEVER_CANCELLED).check()
            scores[key][case.id], predictions[key][case.id] = score_case(model, card, scored, device=device, cancel=cancel)
    return {"scores": scores, "predictions": predictions}


def decide(scores: dict[str, dict[str, float]], margin: float = DEFAULT_MARGIN) -> Verdict:
    candidate = scores.get("candidate", {})
    parent = scores.get("parent")
    if not candidate:
        return Verdict(False, "no held-out labelled case (fewer than 3 labelled cases): kept as a candidate, not promoted", None, None)
    candidate_mean = float(np.mean(list(candidate.values())))
    if parent is None:
        return Verdict(True, "the pool's first model (no parent to compare with)", None, candidate_mean)
    parent_mean = float(np.mean(list(parent.values())))
    if candidate_mean >= parent_mean - margin:
        return Verdict(True, f"held-out Dice {candidate_mean:.3f} vs parent {parent_mean:.3f} (margin {margin:.3f})", parent_mean, candidate_mean)
    return Verdict(False, f"held-out Dice fell from {parent_mean:.3f} to {candidate_mean:.3f}, more than the margin {margin:.3f}",
                   parent_mean, candidate_mean)
