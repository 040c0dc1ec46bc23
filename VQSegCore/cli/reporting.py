"""Reporters turn what a command says (progress, logs, metrics, result, error) into output.

`EventReporter` writes the JSON-lines protocol of `VQSegCore.events` for machines;
`HumanReporter` draws progress bars on stderr and prints a short summary for people.
Commands talk to the `Reporter` interface only, so both modes always say the same things.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from VQSegCore import events


class Reporter:
    """Base class: keeps per-stage timing so every mode reports the same ETA."""

    def __init__(self) -> None:
        self._stage_started: dict[str, float] = {}

    def progress(self, stage: str, done: int, total: int, **extra: Any) -> None:
        self._emit(events.progress(stage, done, total, eta_s=self._eta(stage, done, total), **extra))

    def metric(self, **values: Any) -> None:
        self._emit(events.metric(**values))

    def log(self, message: str, level: str = "info") -> None:
        self._emit(events.log(message, level))

    def result(self, **values: Any) -> None:
        self._emit(events.result(**values))

    def error(self, message: str, hint: str = "", exit_code: int = 1) -> None:
        self._emit(events.error(message, hint, exit_code))

    def close(self) -> None:
        pass

    def _emit(self, event: dict) -> None:
        raise NotImplementedError

    def _eta(self, stage: str, done: int, total: int) -> float | None:
        now = time.monotonic()
        started = self._stage_started.setdefault(stage, now)
        if done <= 0 or total <= 0 or done >= total:
            return 0.0 if total > 0 and done >= total else None
        return round((now - started) / done * (total - done), 1)


class EventReporter(Reporter):
    """One JSON event per line on `stream` (the real stdout), flushed at once for live readers."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def _emit(self, event: dict) -> None:
        self.stream.write(events.encode(event) + "\n")
        self.stream.flush()


class HumanReporter(Reporter):
    """Progress bars and messages on stderr; the final summary on stdout."""

    def __init__(self, err: TextIO | None = None, out: TextIO | None = None) -> None:
        super().__init__()
        self.err = err or sys.stderr
        self.out = out or sys.stdout
        self._bar = None
        self._bar_stage: str | None = None

    def _emit(self, event: dict) -> None:
        kind = event["event"]
        if kind == "progress":
            self._draw(event)
        elif kind == "log":
            prefix = "" if event["level"] == "info" else f"{event['level']}: "
            self._write_err(prefix + event["message"])
        elif kind == "metric":
            self._write_err("  ".join(f"{k}={_short(v)}" for k, v in event.items() if k != "event"))
        elif kind == "result":
            self._close_bar()
            self.out.write(_summary({k: v for k, v in event.items() if k != "event"}))
            self.out.flush()
        elif kind == "error":
            self._close_bar()
            self._write_err(f"error: {event['message']}")
            if event.get("hint"):
                self._write_err(f"hint: {event['hint']}")

    def close(self) -> None:
        self._close_bar()

    def _draw(self, event: dict) -> None:
        from tqdm import tqdm

        if self._bar_stage != event["stage"]:
            self._close_bar()
            self._bar = tqdm(total=event["total"], desc=event["stage"], file=self.err, leave=True, dynamic_ncols=True)
            self._bar_stage = event["stage"]
        shown = _BAR_FIELDS.get(event["stage"])
        extra = {_BAR_NAMES.get(k, k): _short(v) for k, v in event.items()
                 if k not in {"event", "stage", "done", "total", "eta_s"} and (shown is None or k in shown) and v is not None}
        if "time_left_s" in extra:
            extra["left"] = _minutes(event["time_left_s"])
            del extra["time_left_s"]
        if extra:
            self._bar.set_postfix(extra, refresh=False)
        self._bar.update(event["done"] - self._bar.n)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._bar_stage = None

    def _write_err(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.err)
        else:
            self.err.write(text + "\n")
            self.err.flush()


# What a progress bar shows of a stage's fields (the rest stay in --events and the run's log): training
# reports a dozen loss terms and code statistics per iteration, too many to read on one line.
_BAR_FIELDS = {"train": ("loss", "val_dice", "time_left_s")}
_BAR_NAMES = {"val_dice": "val Dice"}


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _summary(values: dict, indent: int = 0) -> str:
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(" " * indent + f"{key}:")
            lines.append(_summary(value, indent + 2).rstrip("\n"))
        else:
            lines.append(" " * indent + f"{key}: {_short(value)}")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_short(v) for v in value)
    return str(value)


class WorkerReporter(Reporter):
    """Ranks > 0 of a torchrun job: rank 0 reports for all; these pass on only warnings and errors."""

    def __init__(self, rank: int, err: TextIO | None = None) -> None:
        super().__init__()
        self.rank = rank
        self.err = err or sys.stderr

    def _emit(self, event: dict) -> None:
        kind = event["event"]
        if kind == "error" or (kind == "log" and event["level"] != "info"):
            level = "error" if kind == "error" else event["level"]
            self.err.write(f"[rank {self.rank}] {level}: {event['message']}\n")
            self.err.flush()
