"""The pool lock: a file lock (file_lock.py) on `<pool>/.lock`, exclusive for writers, shared for readers.

    with PoolLock(layout.lock_file, timeout_s=60):            # add / update / remove / repair
        ...
    with PoolLock(layout.lock_file, timeout_s=60, shared=True):   # verify / export
        ...

The lock belongs to the open file, so the system releases it when the holder dies, even by SIGKILL:
a crashed writer never leaves the pool locked. Two handles in one process also exclude each other.
Waiting longer than `timeout_s` raises InputError ("pool is busy", exit 2).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from types import TracebackType

from VQSegCore.errors import InputError
from VQSegCore.file_lock import try_lock, unlock

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

    @property
    def held(self) -> bool:
        return self._fd is not None

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
