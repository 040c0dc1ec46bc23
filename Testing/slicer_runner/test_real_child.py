"""Real child processes running a fake VQSegCore (fake_cli.py): cancel, process-tree kill, big output."""

import os
import sys
import time
from pathlib import Path

import pytest

from VQSegLib.process import CANCELLED, DONE, FAILED, RUNNING, CliRunner

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process groups and /proc are POSIX")


def alive(pid):
    """True while the process exists and is not a zombie (nobody may reap it in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def pollUntil(run, condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out; state {run.state}, log {run.logLines[-5:]}"
        run.poll()
        time.sleep(0.02)


@pytest.fixture
def runner(fakeCoreSearchPath):
    return CliRunner(sys.executable, fakeCoreSearchPath)


def test_progress_arrives_live_and_cancel_file_stops_the_cli(runner):
    seen = []
    run = runner.start(["count", "200", "0.05"], onEvent=lambda r, e: seen.append(e))
    pollUntil(run, lambda: len(seen) >= 2)  # events arrive while the child runs, not at its end
    assert run.state == RUNNING and seen[0]["stage"] == "segment"
    run.cancel(graceSeconds=10)
    assert run.wait(timeout=10) == CANCELLED
    assert run.returnCode == 3 and run.lastError["message"] == "cancelled"
    assert len([e for e in seen if e["event"] == "progress"]) < 200
    assert not os.path.exists(run.workDir)


@pytest.mark.parametrize("command", ["polite", "stubborn"])
def test_child_ignoring_cancel_is_killed_with_its_grandchild(runner, tmp_path, command):
    """polite dies of SIGTERM after the grace period; stubborn ignores SIGTERM too and needs SIGKILL."""
    pidFile = str(tmp_path / "grandchild.pid")
    run = runner.start([command, pidFile])
    run.killAfterTermSeconds = 0.3
    pollUntil(run, lambda: os.path.exists(pidFile) and run.lastProgress is not None)
    grandchild = int(Path(pidFile).read_text())
    assert alive(grandchild) and alive(run.pid)
    started = time.monotonic()
    run.cancel(graceSeconds=0.3)
    assert run.wait(timeout=10) == CANCELLED
    assert time.monotonic() - started < 3.0
    assert run.returnCode == (-15 if command == "polite" else -9)
    deadline = time.monotonic() + 3
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild), "the grandchild survived the process-group kill"


def test_grandchild_holding_the_pipes_after_success_is_killed(runner, tmp_path):
    pidFile = tmp_path / "grandchild.pid"
    run = runner.start(["orphan", str(pidFile)])
    run.outputDrainSeconds = 0.3
    assert run.wait(timeout=10) == DONE  # does not hang on the pipes the grandchild holds
    grandchild = int(pidFile.read_text())
    assert run.result["grandchild"] == grandchild
    deadline = time.monotonic() + 3
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_large_output_and_partial_lines_do_not_block(runner):
    lines = 20000  # about 2 MB on each pipe, far beyond a pipe buffer
    kinds = []
    run = runner.start(["flood", str(lines)], onEvent=lambda r, e: kinds.append(e["event"]))
    assert run.wait(timeout=30) == DONE
    assert kinds.count("progress") == lines // 1000 and kinds[-2:] == ["metric", "result"]
    assert run.events[-2] == {"event": "metric", "split": True}  # written in two pieces, read as one line
    assert run.result["lines"] == lines
    assert run.logLines[-1] == "last words without a newline"
    assert any(line.startswith("stdout log line") for line in run.logLines)


def test_cancel_with_no_grace_terminates_at_once_without_a_poll(runner):
    run = runner.start(["count", "200", "0.05"])
    pollUntil(run, lambda: run.lastProgress is not None)
    run.cancel(graceSeconds=0)  # e.g. the widget is closing: nobody may poll again
    deadline = time.monotonic() + 5
    while alive(run.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(run.pid)
    assert run.wait(timeout=5) == CANCELLED


def test_traceback_crash_fails_naming_the_exit_code(runner):
    run = runner.start(["crash"])
    assert run.wait(timeout=10) == FAILED
    assert "exit code 1" in run.errorMessage and "ZeroDivisionError" in run.errorMessage
