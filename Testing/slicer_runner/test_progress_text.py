"""Event parsing and the progress text the widget shows."""

import pytest

from VQSegLib.process import describeProgress, formatDuration, parseEventLine, progressFraction


@pytest.mark.parametrize("line, expected", [
    ('{"event":"progress","stage":"segment","done":1,"total":2}\n', {"event": "progress", "stage": "segment", "done": 1, "total": 2}),
    ('  {"event": "result"}  ', {"event": "result"}),
    ("Traceback (most recent call last):", None),
    ('{"no_event_key": 1}', None),
    ('{"event": 3}', None),
    ("[1, 2]", None),
    ('{"event": "progress", ', None),
    ("", None),
])
def test_parse_event_line(line, expected):
    assert parseEventLine(line) == expected


def test_progress_fraction():
    assert progressFraction({"event": "progress", "done": 3, "total": 12}) == 0.25
    assert progressFraction({"event": "progress", "done": 30, "total": 0}) is None  # time-budgeted training
    assert progressFraction({"event": "progress", "done": 13, "total": 12}) == 1.0
    assert progressFraction({"event": "result"}) is None and progressFraction(None) is None


@pytest.mark.parametrize("event, text", [
    ({"stage": "segment", "done": 30, "total": 70, "eta_s": 41.2}, "Segmenting: slice 30/70, about 40 s left"),
    ({"stage": "segment", "done": 70, "total": 70, "eta_s": 0.0}, "Segmenting: slice 70/70"),
    ({"stage": "train", "done": 120, "total": 0, "eta_s": None, "time_left_s": 190}, "Training: iteration 120, about 3 min left"),
    ({"stage": "prepare", "done": 0, "total": 4, "eta_s": None}, "Preparing data: case 0/4"),
    ({"stage": "slab", "unit": "slab", "done": 3, "total": 7, "eta_s": 4800}, "Slab: slab 3/7, about 1 h 20 min left"),
    ({"stage": "warm_up"}, "Warm up"),
])
def test_describe_progress(event, text):
    assert describeProgress({"event": "progress", **event}) == text


@pytest.mark.parametrize("seconds, text", [(0.2, "1 s"), (8.4, "8 s"), (41, "40 s"), (58, "1 min"), (200, "3 min"), (3600, "1 h")])
def test_format_duration(seconds, text):
    assert formatDuration(seconds) == text
