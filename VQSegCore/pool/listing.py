"""Find the cases of a pool, and the next case id.

    records, unreadable = list_cases(layout)     # complete cases only; scratch folders are skipped
    record = find_case(layout, "case-0007-3fa9c1")
    next_case_id(layout)                         # "case-0012-9be04f"

Only folders named like a case id are cases; a folder becomes one in a single rename, after all its
files and its meta.json are written, so anything listed here is complete (verify checks the hashes).
"""

from __future__ import annotations

import secrets

from VQSegCore.errors import InputError
from VQSegCore.pool.layout import PoolLayout, case_number, is_case_id, scratch_case_id
from VQSegCore.pool.manifest import read_entries
from VQSegCore.pool.records import CaseRecord, CaseRecordError, read_case_record


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
