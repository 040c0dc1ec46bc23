"""A checked, frozen copy of a pool's cases for a fine-tune to train on.

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
import shutil
from pathlib import Path

from VQSegCore.atomic import link_or_copy
from VQSegCore.pool.hashing import sha256_file
from VQSegCore.pool.layout import PoolLayout
from VQSegCore.pool.listing import list_cases
from VQSegCore.pool.records import CaseRecord


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
