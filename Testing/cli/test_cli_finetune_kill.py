"""A `vqseg finetune` killed with SIGKILL leaves the store and the pool intact, and `--resume` finishes it with one version.

The kills are timed by the `--events` stream: after the progress event of iteration 3 (the checkpoint
of iteration 2 is on disk, iteration 4 may be running), and at the `report` stage (the version is
written and activated; the report and done.json are not, as drawing them takes seconds).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.finetune_setup import FAST_ARGS, MODEL, at_progress, kill_on_event, make_store_and_pool, write_phantoms
from VQSegCore.model import load_model
from VQSegCore.models import ModelStore
from VQSegCore.pool import Pool

REPO = Path(__file__).resolve().parents[2]
KILL_TIMEOUT_S = 120


def _finetune(home: Path, pool: Path, *extra: str) -> subprocess.Popen:
    """`vqseg finetune --events` as a child: events on a pipe, stderr appended to home/stderr.txt for a failing test's message."""
    env = {**os.environ, "VQSEG_HOME": str(home), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "VQSegCore", "finetune", "--pool", str(pool), "--model", MODEL, *FAST_ARGS, "--margin", "0.99",
               "--events", *extra]
    with open(home / "stderr.txt", "a", encoding="utf-8") as stderr:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO, env=env)


def _kill_at(process: subprocess.Popen, moment) -> list[dict]:
    """Read events until `moment(event)` holds, then SIGKILL the process; the events read so far."""
    seen = kill_on_event(process, moment, lambda: process.send_signal(signal.SIGKILL), KILL_TIMEOUT_S)
    assert process.returncode == -signal.SIGKILL, f"not killed at the chosen moment; last events: {seen[-3:]}, exit {process.returncode}"
    return seen


def _assert_intact(store: ModelStore, pool: Pool, versions: list[str], active: str) -> None:
    listed = store.versions(MODEL)  # what `vqseg models list` shows
    assert [v.version for v in listed] == versions and store.active(MODEL) == active
    for info in listed:
        load_model(info.path)  # card and weights agree (the sha256 is checked)
    assert not list((store.root / MODEL).glob(".building-*"))
    assert sorted(p.name for p in (store.root / MODEL).iterdir() if p.name.startswith("v")) == versions  # none half-written
    report = pool.verify()
    assert report.intact, report.problems


@pytest.fixture
def setup(tmp_path):
    home = tmp_path / "home"
    store, pool = make_store_and_pool(tmp_path, write_phantoms(tmp_path / "phantoms"), labelled=3, store_root=home / "models")
    return home, store, pool


@pytest.mark.slow
def test_killed_while_training_and_while_reporting_then_resumed_writes_one_version(setup):
    home, store, pool = setup

    _kill_at(_finetune(home, pool.folder), at_progress("train", 3))
    _assert_intact(store, pool, ["v0001"], active="v0001")
    (run,) = (store.root / MODEL / ".runs").iterdir()
    assert json.loads((run / "train" / "checkpoint" / "state.json").read_text())["iteration"] == 2

    seen = _kill_at(_finetune(home, pool.folder, "--resume"), at_progress("report", 0))
    assert any(e["event"] == "log" and "resumed at iteration 2" in e["message"] for e in seen)
    _assert_intact(store, pool, ["v0001", "v0002"], active="v0002")
    assert not (run / "done.json").exists()

    finished = _finetune(home, pool.folder, "--resume")
    try:
        out, _ = finished.communicate(timeout=KILL_TIMEOUT_S)
    finally:
        finished.kill()  # a no-op once it has ended
    assert finished.returncode == 0, (home / "stderr.txt").read_text()[-3000:]
    result = json.loads(out.splitlines()[-1])
    assert (result["event"], result["version"], result["parent"], result["run"]) == ("result", "v0002", "v0001", str(run))
    _assert_intact(store, pool, ["v0001", "v0002"], active="v0002")
    assert json.loads((run / "done.json").read_text()) == {"version": "v0002", "promoted": True}
    assert (store.path(MODEL, "v0002") / "report.md").is_file()
    assert json.loads((store.path(MODEL, "v0002") / "card.json").read_text())["training"]["iterations_done"] == 4
