"""manifest.jsonl: the append-only log of what happened to the pool, one JSON object per line.

    append_entry(layout.manifest, {"op": "add", "case_id": "case-0007-3fa9c1", "status": "labelled"})
    entries, bad_lines = read_entries(layout.manifest)

The case folders are the truth; this is a log. A line is appended (flush + fsync) only after the
change it records is in place, under the pool lock, so a crash can at worst lose the last line.
A torn last line (a crash during the append) is skipped when reading and closed before the next.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from VQSegCore.pool.clock import utc_now

OPS = ("add", "update", "remove")


def append_entry(manifest: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Append `entry` (with a `time` added) as one line; returns what was written."""
    line = {"time": utc_now(), **entry}
    data = (json.dumps(line, sort_keys=False) + "\n").encode("utf-8")
    fd = os.open(manifest, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if _ends_without_newline(fd):
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return line


def read_entries(manifest: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """All parseable entries in order, and the numbers of lines that are not (torn or edited)."""
    if not manifest.is_file():
        return [], []
    entries, bad = [], []
    for number, text in enumerate(manifest.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(entry, dict) and entry.get("op") in OPS and isinstance(entry.get("case_id"), str):
            entries.append(entry)
        else:
            bad.append(number)
    return entries, bad


def cases_in_log(entries: list[dict[str, Any]]) -> set[str]:
    """The case ids the log says are in the pool: added and not removed since."""
    present: set[str] = set()
    for entry in entries:
        if entry["op"] == "remove":
            present.discard(entry["case_id"])
        else:
            present.add(entry["case_id"])
    return present


def _ends_without_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"
