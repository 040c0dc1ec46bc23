"""2D masks in reference mm, evaluated only inside their bounding boxes, and painting them."""

from __future__ import annotations

import math

import numpy as np

from VQSegCore.synth.layout import _Layout, _Window
from VQSegCore.synth.tissues import _T, _is_any


def _ellipse_r2(layout: _Layout, win: _Window, cx, cy, rx, ry, angle_deg=0.0) -> np.ndarray:
    """Normalised squared radius of a (rotated) ellipse on a window: <= 1 inside."""
    dx = layout.x_ref[win[1]] - np.float32(cx)
    dy = layout.y_ref[win[0]] - np.float32(cy)
    if angle_deg == 0.0:
        return ((dx / rx) ** 2)[None, :] + ((dy / ry) ** 2)[:, None]
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    u = dx[None, :] * c + dy[:, None] * s
    v = dy[:, None] * c - dx[None, :] * s
    return (u / rx) ** 2 + (v / ry) ** 2


def _ellipse(layout: _Layout, cx, cy, rx, ry, angle_deg=0.0) -> tuple[_Window, np.ndarray]:
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    ex, ey = math.hypot(rx * c, ry * s), math.hypot(rx * s, ry * c)
    win = layout.window(cx - ex, cx + ex, cy - ey, cy + ey)
    return win, _ellipse_r2(layout, win, cx, cy, rx, ry, angle_deg) <= 1.0


def _tube(layout: _Layout, points, radius: float) -> tuple[_Window, np.ndarray]:
    """A 2D polyline of the given radius (a vessel cut lengthwise, e.g. the aortic arch)."""
    pts = np.asarray(points, dtype=np.float32)
    (x0, y0), (x1, y1) = pts.min(0) - radius, pts.max(0) + radius
    win = layout.window(x0, x1, y0, y1)
    x = layout.x_ref[win[1]][None, :]
    y = layout.y_ref[win[0]][:, None]
    d2 = np.full((y.shape[0], x.shape[1]), np.inf, dtype=np.float32)
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        abx, aby = bx - ax, by - ay
        f = np.clip(((x - ax) * abx + (y - ay) * aby) / max(abx * abx + aby * aby, 1e-6), 0, 1)
        np.minimum(d2, (x - ax - f * abx) ** 2 + (y - ay - f * aby) ** 2, out=d2)
    return win, d2 <= radius * radius


def _paint(tissue: np.ndarray, shape: tuple[_Window, np.ndarray], cls: _T, over=None) -> None:
    """Set `cls` on a 2D mask; with `over`, only where the current tissue is one of those."""
    win, mask = shape
    sub = tissue[win]
    if over is not None:
        mask = mask & _is_any(sub, over)
    sub[mask] = cls
