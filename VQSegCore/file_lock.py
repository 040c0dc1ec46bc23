"""Advisory locks on an open file, on POSIX and on Windows.

    if try_lock(fd, shared=False):   # never blocks
        ...
        unlock(fd)

POSIX: `flock`, shared or exclusive; the kernel releases it when the holder dies, even by SIGKILL.
Windows (no `fcntl`): `msvcrt.locking` on the file's first byte, which is exclusive only, so shared
holders exclude each other there too (readers wait for one another; nothing is ever unsafe). Windows
also releases it when the process ends.
"""

from __future__ import annotations

import errno
import os

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


def try_lock(fd: int, shared: bool = False) -> bool:
    """Take the lock on `fd` if it is free; False when another handle holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EDEADLK):  # held by another handle; anything else is a real error
            return False
        raise
    return True


def unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    os.lseek(fd, 0, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
