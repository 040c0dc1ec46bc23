"""The event protocol between the CLI (`--events`) and its readers (the Slicer module, scripts).

One JSON object per line on stdout. This module is the single owner of the format: the CLI
encodes with it and the Slicer module decodes with it, so the two cannot drift. It uses only
the standard library, because the Slicer GUI process imports it without torch.

Kinds:
  progress  {"event":"progress","stage":str,"done":int,"total":int,"eta_s":float|null,...}
  metric    {"event":"metric", ...named numbers...}
  log       {"event":"log","level":"debug|info|warning|error","message":str}
  result    {"event":"result", ...paths written, model version, metrics...}
  error     {"event":"error","message":str,"hint":str,"exit_code":int}
"""

from __future__ import annotations

import json
import math
from typing import Any

PROTOCOL_VERSION = 1
KINDS = ("progress", "metric", "log", "result", "error")
LOG_LEVELS = ("debug", "info", "warning", "error")


def progress(stage: str, done: int, total: int, eta_s: float | None = None, **extra: Any) -> dict:
    return {"event": "progress", "stage": stage, "done": int(done), "total": int(total), "eta_s": eta_s, **extra}


def metric(**values: Any) -> dict:
    return {"event": "metric", **values}


def log(message: str, level: str = "info") -> dict:
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {LOG_LEVELS}")
    return {"event": "log", "level": level, "message": message}


def result(**values: Any) -> dict:
    return {"event": "result", **values}


def error(message: str, hint: str = "", exit_code: int = 1) -> dict:
    return {"event": "error", "message": message, "hint": hint, "exit_code": int(exit_code)}


def encode(event: dict) -> str:
    """One line of strict ASCII JSON (NaN and infinities become null, paths become strings; non-ASCII is \\u-escaped, so any reader decodes it)."""
    if event.get("event") not in KINDS:
        raise ValueError(f"unknown event kind {event.get('event')!r}")
    return json.dumps(_jsonable(event), separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def decode(line: str) -> dict:
    """Parse one line written by `encode`; ValueError if it is not an event."""
    event = json.loads(line)
    if not isinstance(event, dict) or event.get("event") not in KINDS:
        raise ValueError(f"not a VQSeg event: {line[:200]!r}")
    return event


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return str(value)  # Path and other plain values


class SilentReporter:
    """The reporter of work that reports to nobody (library calls without one, other torchrun ranks)."""

    def progress(self, stage: str, done: int, total: int, **extra: Any) -> None:
        pass

    def metric(self, **values: Any) -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        pass


SILENT = SilentReporter()
