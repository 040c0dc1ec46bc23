"""The event protocol: what the CLI encodes, the Slicer side decodes unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from VQSegCore import events


def test_round_trip_of_every_kind():
    for event in (
        events.progress("infer", 3, 10, eta_s=4.5, batch=2),
        events.metric(iteration=5, dice=0.8),
        events.log("hello", "warning"),
        events.result(output="/tmp/x.nii.gz", volume_ml={"lung_tumour": 12.5}),
        events.error("bad", "fix it", 2),
    ):
        line = events.encode(event)
        assert "\n" not in line
        assert events.decode(line) == event


def test_values_that_json_cannot_hold_are_made_safe():
    line = events.encode(events.metric(dice=float("nan"), hd95=float("inf"), count=np.int64(7), mean=np.float32(0.5), path=Path("/a/b")))
    decoded = json.loads(line)  # strict JSON: no NaN tokens
    assert decoded == {"event": "metric", "dice": None, "hd95": None, "count": 7, "mean": 0.5, "path": "/a/b"}


def test_unknown_kinds_and_garbage_are_refused():
    with pytest.raises(ValueError):
        events.encode({"event": "chatter"})
    with pytest.raises(ValueError):
        events.decode('{"event": "chatter"}')
    with pytest.raises(ValueError):
        events.decode("progress 50%")
    with pytest.raises(ValueError):
        events.log("x", level="loud")


def test_events_module_needs_only_the_standard_library():
    source = Path(events.__file__).read_text()
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert set(imports) <= {"__future__", "json", "math", "typing"}
