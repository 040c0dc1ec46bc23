"""The exceptions that decide the CLI's exit code (docs/architecture.md §3.1).

`InputError` (exit 2) is anything the user can fix: a bad file, a bad argument, a full disk.
`Cancelled` (exit 3) is a cooperative cancel. Every other exception is a bug (exit 1).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 3


class InputError(Exception):
    """Bad input or arguments: the message names the file and the problem, the hint says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Cancelled(Exception):
    """The run was cancelled (cancel file, SIGTERM or Ctrl-C); partial work has been discarded."""
