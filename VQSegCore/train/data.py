"""Training data: spec cases prepared once onto the model grid, and random 2D crops drawn from them.

    cache = CaseCache(out_dir / "cache", config.preprocessing, spec.classes)
    labelled = [cache.prepare(case) for case in spec.labelled("train")]
    sampler = SliceSampler(labelled, unlabelled, crop_size=64, size_multiple=config.size_multiple,
                           context_slices=config.preprocessing.context_slices, rng=np.random.default_rng(0))
    images, labels = sampler.labelled_batch(2)      # [B, C, crop, crop] float32, [B, crop, crop] long
    images = sampler.unlabelled_batch(2)             # [B, C, crop, crop] float32

Each case is mapped with `to_model_grid` once and stored as float16 `.npy` (image) and uint8 `.npy`
(label as *channel index*: 0 background, i = the i-th class of the table) under the cache folder.
The key hashes the image (and label) path, mtime and size and the preprocessing config, so an edited
file or a changed preprocessing recomputes. Arrays are read back with `np.load(mmap_mode="r")`:
many volumes never sit in RAM as float32.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from VQSegCore.atomic import atomic_output
from VQSegCore.cancel import NEVER_CANCELLED
from VQSegCore.classes import ClassTable, unexpected_values
from VQSegCore.dataset_spec import Case
from VQSegCore.errors import InputError
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.preprocess import slice_stack, to_model_grid, label_to_model_grid

IGNORE_INDEX = 255
CACHE_VERSION = 1


@dataclass
class PreparedCase:
    """One case on the model grid: image float16 [z, H, W] (memory-mapped), label uint8 channel indices or None."""

    id: str
    split: str
    image: np.ndarray
    label: np.ndarray | None = None
    background: float = 0.0

    @property
    def labelled(self) -> bool:
        return self.label is not None

    def foreground_slices(self) -> np.ndarray:
        if self.label is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.asarray(self.label).reshape(self.label.shape[0], -1).max(axis=1) > 0)


def _file_identity(path: Path) -> dict:
    stat = os.stat(path)
    return {"path": str(path), "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}


class CaseCache:
    """Prepares cases once and keeps them as `.npy` files; `computed` counts real preparations."""

    def __init__(self, folder: str | os.PathLike, preprocessing: PreprocessingConfig, classes: ClassTable) -> None:
        self.folder = Path(folder)
        self.preprocessing = preprocessing
        self.classes = classes
        self.computed = 0

    def key(self, case: Case, with_label: bool = True) -> str:
        identity = {
            "version": CACHE_VERSION,
            "image": _file_identity(case.image),
            "label": _file_identity(case.label) if (with_label and case.label is not None) else None,
            "preprocessing": self.preprocessing.to_dict(),
            "classes": self.classes.values,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]

    def prepare(self, case: Case, *, with_label: bool = True) -> PreparedCase:
        key = self.key(case, with_label)
        image_path = self.folder / f"{key}.image.npy"
        label_path = self.folder / f"{key}.label.npy" if (with_label and case.labelled) else None
        meta_path = self.folder / f"{key}.json"
        complete = image_path.is_file() and meta_path.is_file() and (label_path is None or label_path.is_file())
        if not complete:
            self._compute(case, image_path, label_path, meta_path)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        image = np.load(image_path, mmap_mode="r")
        label = np.load(label_path, mmap_mode="r") if label_path is not None else None
        return PreparedCase(case.id, case.split, image, label, float(meta.get("background", 0.0)))

    def _compute(self, case: Case, image_path: Path, label_path: Path | None, meta_path: Path) -> None:
        from VQSegCore.io import read_label_map, read_volume

        self.folder.mkdir(parents=True, exist_ok=True)
        volume = read_volume(case.image)
        grid = to_model_grid(volume.image, self.preprocessing)
        if label_path is not None:
            label_image = read_label_map(case.label, reference=volume.image, what=f"label of case {case.id!r}")
            label = label_to_model_grid(label_image, grid)
            _save_npy(label_path, self._channel_indices(label, case))
        _save_npy(image_path, grid.array.astype(np.float16))
        with atomic_output(meta_path) as temp:
            temp.write_text(json.dumps({"case": case.id, "shape": list(grid.array.shape), "background": grid.background_value}), encoding="utf-8")
        self.computed += 1

    def _channel_indices(self, label: np.ndarray, case: Case) -> np.ndarray:
        values = self.classes.values
        if unknown := unexpected_values(label, self.classes):
            raise InputError(
                f"case {case.id!r}: label {case.label} holds value(s) {unknown} outside the class table {values}",
                "fix the label map, or add these values to the spec's \"classes\"",
            )
        lookup = np.zeros(max(int(label.max()), max(values)) + 1, dtype=np.uint8)
        for index, value in enumerate(values, start=1):
            lookup[value] = index
        return lookup[label]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_output(path) as temp:
        with open(temp, "wb") as stream:
            np.save(stream, np.ascontiguousarray(array))


class SliceSampler:
    """Random batches of 2D crops (2.5D channels when `context_slices > 0`), seeded by `rng`.

    Labelled batches: a fraction `foreground_fraction` of the crops is drawn from slices that hold
    foreground and placed so the crop contains a foreground pixel; the rest from any labelled slice.
    Slices smaller than the crop are padded (image with the case's background, label with 255).
    `shard=(rank, world_size)` keeps every world_size-th slice (torchrun: each rank its own part).
    """

    def __init__(
        self,
        labelled: list[PreparedCase],
        unlabelled: list[PreparedCase],
        *,
        crop_size: int,
        size_multiple: int,
        rng: np.random.Generator,
        context_slices: int = 0,
        foreground_fraction: float = 0.5,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if crop_size < size_multiple or crop_size % size_multiple:
            raise InputError(f"crop size {crop_size} must be a positive multiple of {size_multiple} (the model's size multiple)",
                             f"use e.g. --crop-size {max(size_multiple, crop_size // size_multiple * size_multiple)}")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError("foreground_fraction must be in [0, 1]")
        if not labelled:
            raise InputError("no labelled training case", "add a \"label\" to at least one train case")
        self.labelled, self.unlabelled = labelled, unlabelled
        self.crop, self.context, self.rng = crop_size, context_slices, rng
        self.foreground_fraction = foreground_fraction
        rank, world_size = shard
        if not 0 <= rank < world_size:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        self._all_slices = _shard([(i, k) for i, case in enumerate(labelled) for k in range(case.image.shape[0])], rank, world_size)
        self._fg_slices = _shard([(i, int(k)) for i, case in enumerate(labelled) for k in case.foreground_slices()], rank, world_size)
        self._unlabelled_slices = _shard([(i, k) for i, case in enumerate(unlabelled) for k in range(case.image.shape[0])], rank, world_size)

    def labelled_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for _ in range(batch_size):
            want_fg = bool(self._fg_slices) and self.rng.random() < self.foreground_fraction
            pool = self._fg_slices if want_fg else self._all_slices
            case_index, k = pool[int(self.rng.integers(len(pool)))]
            case = self.labelled[case_index]
            image, label = self._padded(case, k)
            top, left = self._offset(label if want_fg else None, image.shape[-2:])
            images.append(image[:, top : top + self.crop, left : left + self.crop])
            labels.append(label[top : top + self.crop, left : left + self.crop])
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels).astype(np.int64))

    def unlabelled_batch(self, batch_size: int) -> torch.Tensor:
        if not self._unlabelled_slices:
            raise ValueError("no unlabelled case to sample from")
        images = []
        for _ in range(batch_size):
            case_index, k = self._unlabelled_slices[int(self.rng.integers(len(self._unlabelled_slices)))]
            image, _ = self._padded(self.unlabelled[case_index], k, with_label=False)
            top, left = self._offset(None, image.shape[-2:])
            images.append(image[:, top : top + self.crop, left : left + self.crop])
        return torch.from_numpy(np.stack(images))

    # ---- helpers ------------------------------------------------------------------------------
    def _padded(self, case: PreparedCase, k: int, with_label: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        image = np.asarray(slice_stack(case.image, k, self.context), dtype=np.float32)  # [C, H, W]
        label = np.asarray(case.label[k]) if (with_label and case.label is not None) else None
        height, width = image.shape[-2:]
        extra_h, extra_w = max(0, self.crop - height), max(0, self.crop - width)
        if extra_h or extra_w:
            before = (extra_h // 2, extra_w // 2)
            widths = ((before[0], extra_h - before[0]), (before[1], extra_w - before[1]))
            image = np.pad(image, ((0, 0), *widths), constant_values=case.background)
            if label is not None:
                label = np.pad(label, widths, constant_values=IGNORE_INDEX)
        return image, label

    def _offset(self, label: np.ndarray | None, shape: tuple[int, int]) -> tuple[int, int]:
        max_top, max_left = shape[0] - self.crop, shape[1] - self.crop
        if label is not None:
            ys, xs = np.nonzero((label > 0) & (label != IGNORE_INDEX))
            if len(ys):
                j = int(self.rng.integers(len(ys)))
                y, x = int(ys[j]), int(xs[j])
                top = int(self.rng.integers(max(0, y - self.crop + 1), min(y, max_top) + 1))
                left = int(self.rng.integers(max(0, x - self.crop + 1), min(x, max_left) + 1))
                return top, left
        return int(self.rng.integers(max_top + 1)), int(self.rng.integers(max_left + 1))


def _shard(slices: list[tuple[int, int]], rank: int, world_size: int) -> list[tuple[int, int]]:
    """Every `world_size`-th slice from `rank` on (the whole list when that would leave nothing)."""
    part = slices[rank::world_size]
    return part if part else slices


def prepare_training_data(spec, cache: CaseCache, *, include_labelled_as_unlabelled: bool = True, cancel=None, progress=None):
    """(labelled train cases, unlabelled train cases) as PreparedCase lists; the labelled ones are required."""
    labelled_cases = spec.require_labelled("train")
    unlabelled_cases = [case for case in spec.cases("train") if not case.labelled]
    total = len(labelled_cases) + len(unlabelled_cases)
    labelled, unlabelled = [], []
    for done, case in enumerate(labelled_cases + unlabelled_cases):
        (cancel or NEVER_CANCELLED).check()
        if progress is not None:
            progress(done, total, case.id)
        prepared = cache.prepare(case)
        (labelled if case.labelled else unlabelled).append(prepared)
    if include_labelled_as_unlabelled:
        unlabelled = unlabelled + labelled
    return labelled, unlabelled
