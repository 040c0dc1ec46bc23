"""The pool's lock (one writer, or many readers) and its append-only log of changes.

locking:
    The pool lock: a file lock (file_lock.py) on `<pool>/.lock`, exclusive for writers, shared for readers.

        with PoolLock(layout.lock_file, timeout_s=60):            # add / update / remove / repair
            ...
        with PoolLock(layout.lock_file, timeout_s=60, shared=True):   # verify / export
            ...

    The lock belongs to the open file, so the system releases it when the holder dies, even by SIGKILL:
    a crashed writer never leaves the pool locked. Two handles in one process also exclude each other.
    Waiting longer than `timeout_s` raises InputError ("pool is busy", exit 2).

manifest:
    manifest.jsonl: the append-only log of what happened to the pool, one JSON object per line.

        append_entry(layout.manifest, {"op": "add", "case_id": "case-0007-3fa9c1", "status": "labelled"})
        entries, bad_lines = read_entries(layout.manifest)

    The case folders are the truth; this is a log. A line is appended (flush + fsync) only after the
    change it records is in place, under the pool lock, so a crash can at worst lose the last line.
    A torn last line (a crash during the append) is skipped when reading and closed before the next.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from VQSegCore.errors import InputError
from VQSegCore.file_lock import try_lock, unlock
from VQSegCore.pool.layout import utc_now


# ---- locking ---------------------------------------------------------------------------------
DEFAULT_LOCK_TIMEOUT_S = 60.0
_POLL_S = 0.02


class PoolLock:
    def __init__(self, lock_file: Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, shared: bool = False) -> None:
        self.lock_file = Path(lock_file)
        self.timeout_s = float(timeout_s)
        self.shared = shared
        self._fd: int | None = None

    def __enter__(self) -> "PoolLock":
        fd = self._open()
        if fd is None:  # a read-only pool that nobody can change: nothing to exclude
            return self
        deadline = time.monotonic() + self.timeout_s
        while not try_lock(fd, shared=self.shared):
            if time.monotonic() >= deadline:
                os.close(fd)
                raise InputError(
                    f"pool {self.lock_file.parent} is busy: another vqseg process has held its lock for {self.timeout_s:g} s",
                    "wait for the other pool command to finish and try again (or raise --lock-timeout)",
                )
            time.sleep(_POLL_S)
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._fd is not None:
            unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int | None:
        try:
            return os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            if self.shared and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                try:
                    return os.open(self.lock_file, os.O_RDONLY)
                except FileNotFoundError:
                    return None
            raise InputError(f"cannot lock pool {self.lock_file.parent}: {error.strerror}", "check that the pool folder exists and is writable") from error


# ---- manifest --------------------------------------------------------------------------------
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
