"""CT-like noise: Gaussian, slightly smoothed in-plane, added slab by slab."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_HU_MIN, _HU_MAX = -1024, 3071


def _smooth_121(a: np.ndarray, axis: int) -> np.ndarray:
    """[1, 2, 1] filter along an axis (unnormalised, edges one-sided)."""
    out = a * np.float32(2)
    n = a.shape[axis]
    lead = (slice(None),) * (axis % a.ndim)
    out[lead + (slice(1, n),)] += a[lead + (slice(0, n - 1),)]
    out[lead + (slice(0, n - 1),)] += a[lead + (slice(1, n),)]
    return out


def _add_ct_noise(hu: np.ndarray, noise_hu: float, seed: np.random.SeedSequence,
                  slab: int = 4) -> None:
    """Add in-plane correlated Gaussian noise with std `noise_hu`, slab by slab (bounded memory).

    Each slab draws from its own stream spawned from `seed`, so the slabs can run on several
    threads (numpy releases the GIL here) and the result does not depend on how many do.
    """
    if noise_hu <= 0:
        return
    # White noise through [1,2,1] in x then y has std sqrt(6) * sqrt(6) = 6.
    gain = np.float32(noise_hu / 6.0)
    starts = range(0, hu.shape[0], slab)
    streams = seed.spawn(len(starts))

    def add_to_slab(i: int) -> None:
        target = hu[starts[i]:starts[i] + slab]
        noise = np.random.default_rng(streams[i]).standard_normal(target.shape, dtype=np.float32)
        noise = _smooth_121(_smooth_121(noise, 2), 1)
        noise *= gain
        noise += target
        np.rint(noise, out=noise)
        np.clip(noise, _HU_MIN, _HU_MAX, out=noise)
        target[...] = noise

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(add_to_slab, range(len(starts))))
