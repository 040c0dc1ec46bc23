"""Run the CLI in a child process, as the Slicer module and users do, and read its JSON events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from helpers.paths import REPO


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def last(self) -> dict:
        return self.events[-1]


def run_cli(*args: str, timeout: float = 120, env: dict | None = None) -> CliRun:
    """Run `python -m VQSegCore ARGS` in a child process, as the Slicer module and users do."""
    completed = subprocess.run(
        [sys.executable, "-m", "VQSegCore", *map(str, args)],
        capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout, cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    return CliRun(completed.returncode, completed.stdout, completed.stderr)
