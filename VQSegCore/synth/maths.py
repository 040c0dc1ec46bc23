"""Small maths helpers shared by the anatomy, the vessel trees and the tumour."""

from __future__ import annotations

import math

import numpy as np


def _smooth_bump(t: float, lo: float, hi: float) -> float:
    """0 outside [lo, hi], rising to 1 in the middle like a sphere's cross-section."""
    u = (2 * t - lo - hi) / (hi - lo)
    return math.sqrt(1 - u * u) if abs(u) < 1 else 0.0


def _lerp(a, b, u: float):
    return tuple(x + (y - x) * u for x, y in zip(a, b))


def _unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.sqrt((v * v).sum(axis=-1, keepdims=True)), 1e-9)
