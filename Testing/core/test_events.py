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


def test_the_training_bar_shows_loss_validation_dice_and_time_left_only():
    import io

    from VQSegCore.cli.reporting import HumanReporter

    err, out = io.StringIO(), io.StringIO()
    reporter = HumanReporter(err=err, out=out)
    fields = dict(iteration=3, loss=0.51234, supervised=0.3, unsupervised=0.2, vq=0.01, pseudo_coverage=0.4, lr=1e-3,
                  codebook_fraction=0.2, codebook_perplexity=31.2, qpm_candidates=8.0, val_dice=0.61, time_left_s=125.0)
    reporter.progress("train", 3, 0, **fields)
    reporter.close()
    text = err.getvalue()
    assert "loss=0.51234" in text and "val Dice=0.61" in text and "left=2:05" in text
    for hidden in ("perplexity", "coverage", "unsupervised", "lr="):
        assert hidden not in text
