"""UTC timestamps as ISO 8601 strings, the one time format of pool files.

    utc_now()   # "2025-03-14T09:26:53.589Z"
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
