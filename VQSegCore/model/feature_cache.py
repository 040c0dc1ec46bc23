"""On-disk cache of frozen foundation-model features, one safetensors file per (case, model).

Layout: <folder>/<model-id>/<case-hash>.safetensors, with the model id and case hash repeated in
the file's metadata and checked on read, so a renamed or foreign file is recomputed, never
trusted. Writes are atomic (VQSegCore.atomic): a killed run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from VQSegCore.atomic import atomic_output

FEATURES_KEY = "features"


def case_hash(array: np.ndarray | Tensor, extra: str = "") -> str:
    """sha256 of an array's dtype, shape and bytes (+ `extra`, e.g. the preprocessing settings)."""
    values = array.detach().cpu().numpy() if isinstance(array, Tensor) else np.asarray(array)
    values = np.ascontiguousarray(values)
    digest = hashlib.sha256()
    digest.update(f"{values.dtype.str}|{values.shape}|{extra}|".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


class FeatureCache:
    """get_or_compute(case_hash, model_id, compute) returns cached features or computes and stores them."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path_for(self, case_hash: str, model_id: str) -> Path:
        return self.folder / _safe_name(model_id) / f"{_safe_name(case_hash)}.safetensors"

    def load(self, case_hash: str, model_id: str) -> Tensor | None:
        path = self.path_for(case_hash, model_id)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                if metadata.get("model_id") != model_id or metadata.get("case_hash") != case_hash:
                    return None
                return handle.get_tensor(FEATURES_KEY)
        except Exception:  # unreadable entry: treat as a miss; it is overwritten on save
            return None

    def save(self, case_hash: str, model_id: str, features: Tensor) -> Path:
        path = self.path_for(case_hash, model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as temp:
            save_file(
                {FEATURES_KEY: features.detach().cpu().contiguous()},
                str(temp),
                metadata={"model_id": model_id, "case_hash": case_hash},
            )
        return path

    def get_or_compute(self, case_hash: str, model_id: str, compute: Callable[[], Tensor]) -> Tensor:
        cached = self.load(case_hash, model_id)
        if cached is not None:
            return cached
        features = compute()
        self.save(case_hash, model_id, features)
        return features.detach().cpu()


def _safe_name(text: str) -> str:
    # Keep names readable but file-system safe; a digest suffix keeps distinct ids distinct.
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]
    if cleaned == text:
        return text
    return f"{cleaned}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
