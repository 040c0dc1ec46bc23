"""Write a dataset spec for `vqseg train` from a pool's cases.

    spec_path = export_spec(layout, info, records, Path("pool-spec.json"), val_fraction=0.2, seed=0)
    DatasetSpec.load(spec_path)    # or: vqseg train --dataset pool-spec.json --out run/ --iterations 2000

Labelled cases get their label; unlabelled cases are listed without one (semi-supervised training
learns from them too). All cases are "train" unless `val_fraction` moves a share of the labelled
ones, chosen reproducibly by `seed`, to "val". Paths are relative to the spec's folder, so a pool
and a spec beside it can move together.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from VQSegCore.atomic import check_writable_folder, write_json_atomic
from VQSegCore.errors import InputError
from VQSegCore.pool.pool_file import PoolInfo
from VQSegCore.pool.layout import PoolLayout
from VQSegCore.pool.records import CaseRecord


def export_spec(
    layout: PoolLayout,
    info: PoolInfo,
    records: list[CaseRecord],
    path: str | os.PathLike,
    val_fraction: float = 0.0,
    seed: int = 0,
    include_unlabelled: bool = True,
) -> Path:
    """Write the spec atomically and return its path."""
    path = Path(path)
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val fraction {val_fraction:g} is outside 0 ≤ f < 1", "e.g. --val-fraction 0.2, or 0 for no validation split")
    if path.suffix.lower() != ".json":
        raise InputError(f"{path}: a dataset spec is a .json file", "give a path ending in .json")
    check_writable_folder(path)
    chosen = [r for r in records if r.has_label or include_unlabelled]
    if not chosen:
        raise InputError(f"pool {layout.root} has no {'cases' if include_unlabelled else 'labelled cases'} to export", "add cases with 'vqseg pool add'")
    validation = _validation_ids([r for r in chosen if r.has_label], val_fraction, seed)
    folder = Path(os.path.abspath(path)).parent
    cases = [_spec_case(record, folder, "val" if record.case_id in validation else "train") for record in chosen]
    write_json_atomic(path, {"name": info.name, "classes": info.classes.to_list(), "cases": cases})
    return path


def _validation_ids(labelled: list[CaseRecord], fraction: float, seed: int) -> set[str]:
    # At least one labelled case must stay in "train": `vqseg train` refuses a train split without labels.
    count = min(round(len(labelled) * fraction), max(len(labelled) - 1, 0))
    ids = sorted(r.case_id for r in labelled)
    return set(random.Random(seed).sample(ids, count))


def _spec_case(record: CaseRecord, folder: Path, split: str) -> dict:
    case = {"id": record.case_id, "image": _relative(record.image_path, folder)}
    if record.label_path is not None:
        case["label"] = _relative(record.label_path, folder)
    case["split"] = split
    return case


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), folder)).as_posix()
