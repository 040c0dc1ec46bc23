"""Cooperative cancellation: a cancel file that a GUI can create, and SIGTERM.

Long loops call `token.check()`; it raises `Cancelled` once the cancel file exists. SIGTERM raises
`Cancelled` at once (like Ctrl-C raises KeyboardInterrupt), so work stops promptly; atomic writes
then discard their temporary files and the CLI exits with code 3.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Iterator

from VQSegCore.errors import Cancelled


class CancelToken:
    def __init__(self, cancel_file: str | os.PathLike | None = None) -> None:
        self.cancel_file = Path(cancel_file) if cancel_file else None
        self._signalled = False

    @property
    def requested(self) -> bool:
        return self._signalled or (self.cancel_file is not None and self.cancel_file.exists())

    def check(self) -> None:
        if self.requested:
            raise Cancelled("cancelled by request")

    def signal(self) -> None:
        self._signalled = True


@contextlib.contextmanager
def sigterm_cancels(token: CancelToken) -> Iterator[None]:
    """While active, SIGTERM marks the token and raises Cancelled in the main thread."""

    def on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
        token.signal()
        raise Cancelled("cancelled by SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (e.g. called from a test runner thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class NeverCancelled:
    """The cancel token of work that nobody can cancel: code that takes a token never checks for None."""

    requested = False

    def check(self) -> None:
        pass


NEVER_CANCELLED = NeverCancelled()
