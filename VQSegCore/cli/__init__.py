"""The `vqseg` command line: one program for people (progress bars) and machines (`--events`)."""

from __future__ import annotations

from VQSegCore.cli.app import run_cli
from VQSegCore.cli.commands import COMMANDS


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, COMMANDS)
