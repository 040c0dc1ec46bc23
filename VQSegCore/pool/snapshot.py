"""A checked, frozen copy of a pool's cases for a fine-tune to train on.

    records, damaged = snapshot_cases(layout, run / "pool-snapshot")   # caller holds the shared lock

Every data file of every case is hard-linked (copied across file systems) into `target/<case id>/`
and hashed there against its meta.json. A case whose meta.json is unreadable, or whose file is
missing or changed, is reported in `damaged` and left out. The links keep the files a fine-tune
trains on alive and unchanged whatever `pool remove` or a label update does to the pool meanwhile.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from VQSegCore.pool.durable import link_or_copy
from VQSegCore.pool.hashing import sha256_file
from VQSegCore.pool.layout import PoolLayout
from VQSegCore.pool.listing import list_cases
from VQSegCore.pool.records import CaseRecord


def snapshot_cases(layout: PoolLayout, target: Path) -> tuple[list[CaseRecord], list[tuple[str, str]]]:
    """(records of the intact cases, now pointing into `target`; (case id, what is wrong) per damaged case)."""
    records, damaged = list_cases(layout)
    damaged = [(case_id, f"meta.json: {reason}") for case_id, reason in damaged]
    intact = []
    for record in records:
        folder = target / record.case_id
        folder.mkdir(parents=True)
        problem = _copy_checked(record, folder)
        if problem:
            damaged.append((record.case_id, problem))
            shutil.rmtree(folder)
        else:
            intact.append(dataclasses.replace(record, folder=folder))
    return intact, sorted(damaged)


def _copy_checked(record: CaseRecord, folder: Path) -> str | None:
    for name, expected in record.sha256.items():
        source = record.path(name)
        if not source.is_file():
            return f"{name} is missing"
        link_or_copy(source, folder / name)
        if sha256_file(folder / name) != expected:
            return f"{name} does not match the hash in its meta.json (changed or replaced)"
    return None
