"""Cases read out of a pool: listed, exported as a dataset spec, or frozen as a checked snapshot
for a fine-tune.

listing:
    Find the cases of a pool, and the next case id.

        records, unreadable = list_cases(layout)     # complete cases only; scratch folders are skipped
        record = find_case(layout, "case-0007-3fa9c1")
        next_case_id(layout)                         # "case-0012-9be04f"

    Only folders named like a case id are cases; a folder becomes one in a single rename, after all its
    files and its meta.json are written, so anything listed here is complete (verify checks the hashes).

export:
    Write a dataset spec for `vqseg train` from a pool's cases.

        spec_path = export_spec(layout, info, records, Path("pool-spec.json"), val_fraction=0.2, seed=0)
        DatasetSpec.load(spec_path)    # or: vqseg train --dataset pool-spec.json --out run/ --iterations 2000

    Labelled cases get their label; unlabelled cases are listed without one (semi-supervised training
    learns from them too). All cases are "train" unless `val_fraction` moves a share of the labelled
    ones, chosen reproducibly by `seed`, to "val". Paths are relative to the spec's folder, so a pool
    and a spec beside it can move together.

snapshot:
    A checked, frozen copy of a pool's cases for a fine-tune to train on.

        with pool lock (shared):
            linked, damaged = link_cases(layout, run / "pool-snapshot")
        records, damaged = check_links(linked, damaged)      # hashing, after the lock is released

    Every data file of every case is hard-linked (copied across file systems) into `target/<case id>/`
    under the pool's shared lock, which is then released; the links are hashed against each case's
    meta.json afterwards, so a large pool is not locked while it is hashed. A case whose meta.json is
    unreadable, or whose file is missing or changed, is reported in `damaged` and left out. The links
    keep the files a fine-tune trains on alive and unchanged whatever `pool remove` or a label update
    does to the pool meanwhile.
"""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import shutil
from pathlib import Path

from VQSegCore.atomic import check_writable_folder, link_or_copy, write_json_atomic
from VQSegCore.errors import InputError
from VQSegCore.pool.journal import read_entries
from VQSegCore.pool.layout import PoolLayout, case_number, is_case_id, scratch_case_id, sha256_file
from VQSegCore.pool.pool_file import PoolInfo
from VQSegCore.pool.records import CaseRecord, CaseRecordError, read_case_record


# ---- listing ---------------------------------------------------------------------------------
def case_folder_names(layout: PoolLayout) -> list[str]:
    if not layout.cases_dir.is_dir():
        return []
    names = [entry.name for entry in layout.cases_dir.iterdir() if entry.is_dir() and is_case_id(entry.name)]
    return sorted(names, key=lambda name: (case_number(name), name))


def list_cases(layout: PoolLayout) -> tuple[list[CaseRecord], list[tuple[str, str]]]:
    """Readable case records in id order, and (case id, reason) for cases whose meta.json is broken."""
    records, unreadable = [], []
    for name in case_folder_names(layout):
        try:
            records.append(read_case_record(layout.case_dir(name)))
        except CaseRecordError as problem:
            unreadable.append((name, str(problem)))
        except FileNotFoundError:  # removed by another process between listing and reading
            continue
    return records, unreadable


def find_case(layout: PoolLayout, case_id: str) -> CaseRecord:
    folder = layout.case_dir(case_id) if is_case_id(case_id) else None
    if folder is None or not folder.is_dir():
        known = case_folder_names(layout)
        shown = ", ".join(known[-5:]) if known else "the pool is empty"
        raise InputError(f"pool {layout.root}: no case {case_id!r}", f"run 'vqseg pool list' to see the case ids ({shown})")
    try:
        return read_case_record(folder)
    except CaseRecordError as problem:
        raise InputError(f"pool {layout.root}: case {case_id} is damaged: {problem}", "run 'vqseg pool verify'") from problem


def next_case_id(layout: PoolLayout) -> str:
    """One more than any number used before (in the folders or the log), so ids of removed cases never return.

    Call it under the pool lock. The random tail keeps ids unique even if the log is lost.
    """
    used = [case_number(name) for name in case_folder_names(layout)]
    if layout.cases_dir.is_dir():
        used += [case_number(scratch) for entry in layout.cases_dir.iterdir() if (scratch := scratch_case_id(entry.name))]
    entries, _ = read_entries(layout.manifest)
    used += [case_number(entry["case_id"]) for entry in entries]
    highest = max((number for number in used if number is not None), default=0)
    return f"case-{highest + 1:04d}-{secrets.token_hex(3)}"


# ---- export ----------------------------------------------------------------------------------
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


# ---- snapshot --------------------------------------------------------------------------------
def link_cases(layout: PoolLayout, target: Path) -> tuple[list[CaseRecord], list[tuple[str, str]]]:
    """(records pointing into `target`, (case id, what is wrong) for cases that cannot be linked). Under the pool lock."""
    records, unreadable = list_cases(layout)
    damaged = [(case_id, f"meta.json: {reason}") for case_id, reason in unreadable]
    linked = []
    for record in records:
        folder = target / record.case_id
        folder.mkdir(parents=True)
        missing = next((name for name in record.sha256 if not record.path(name).is_file()), None)
        if missing:
            damaged.append((record.case_id, f"{missing} is missing"))
            shutil.rmtree(folder)
            continue
        for name in record.sha256:
            link_or_copy(record.path(name), folder / name)
        linked.append(dataclasses.replace(record, folder=folder))
    return linked, damaged


def check_links(linked: list[CaseRecord], damaged: list[tuple[str, str]]) -> tuple[list[CaseRecord], list[tuple[str, str]]]:
    """The linked cases whose every file matches its recorded hash; the others join `damaged` (and are removed)."""
    intact, damaged = [], list(damaged)
    for record in linked:
        changed = next((name for name, expected in record.sha256.items() if sha256_file(record.path(name)) != expected), None)
        if changed:
            damaged.append((record.case_id, f"{changed} does not match the hash in its meta.json (changed or replaced)"))
            shutil.rmtree(record.folder)
        else:
            intact.append(record)
    return intact, sorted(damaged)
