"""The run's state machine, driven by a fake Popen: no process is started."""

import io
import json
import os
import subprocess

import pytest

from VQSegLib import process
from VQSegLib.process import CANCELLED, DONE, FAILED, IMPORTING, RUNNING, CliRunner, CliRunnerError

NO_SUCH_PID = 2**31 - 1  # killpg on it can only fail, never hit a real process


def event(kind, **values):
    return json.dumps({"event": kind, **values})


class FakeProcess:
    """Replays canned output; exits with `code` (after the cancel file appears, if `untilCancelled`)."""

    def __init__(self, command, out=(), err=(), code=0, untilCancelled=False, **options):
        self.command, self.options = command, options
        self.stdout = io.BytesIO("".join(line + "\n" for line in out).encode())
        self.stderr = io.BytesIO("".join(line + "\n" for line in err).encode())
        self.pid = NO_SUCH_PID
        self.code, self.untilCancelled = code, untilCancelled
        self.cancelFile = command[command.index("--cancel-file") + 1]

    def poll(self):
        if self.untilCancelled and not os.path.exists(self.cancelFile):
            return None
        return self.code


def runnerFor(launched=None, **behaviour):
    def popen(command, **options):
        fake = FakeProcess(command, **behaviour, **options)
        if launched is not None:
            launched.append(fake)
        return fake
    return CliRunner("/usr/bin/python3", "/opt/core", environment={"VQSEG_HOME": "/tmp/home", "CUDA_VISIBLE_DEVICES": -1}, popen=popen)


def test_command_line_environment_and_process_options():
    launched = []
    run = runnerFor(launched, code=0).start(["segment", "/data/ct.nrrd", "--output", "/data/label.nrrd"])
    fake = launched[0]
    assert fake.command == ["/usr/bin/python3", "-m", "VQSegCore", "--events", "--cancel-file",
                            os.path.join(run.workDir, "cancel"), "segment", "/data/ct.nrrd", "--output", "/data/label.nrrd"]
    options = fake.options
    assert options["stdin"] is subprocess.DEVNULL and options["stdout"] is subprocess.PIPE and options["stderr"] is subprocess.PIPE
    assert options["start_new_session"] is True and options["cwd"] == run.workDir
    env = options["env"]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == "/opt/core"
    assert env["PYTHONUNBUFFERED"] == "1" and env["VQSEG_HOME"] == "/tmp/home" and env["CUDA_VISIBLE_DEVICES"] == "-1"
    assert env["PATH"] == os.environ["PATH"]
    assert run.state == RUNNING and os.path.isdir(run.workDir)
    assert run.wait(timeout=5) == DONE and not os.path.exists(run.workDir)


def test_events_in_order_log_lines_kept_then_importing_then_done():
    stdout = [
        event("progress", stage="segment", done=1, total=4, eta_s=3.0),
        "a plain line on stdout",
        event("progress", stage="segment", done=2, total=4, eta_s=2.0),
        event("log", level="info", message="hello"),
        event("progress", stage="segment", done=4, total=4, eta_s=0.0),
        '{"event": broken json',
        event("result", output="/data/label.nrrd"),
    ]
    seen, states = [], []

    def onFinished(run):
        states.append(run.state)
        assert os.path.isdir(run.workDir)  # the outputs are still there to import
        run.finishImport()

    runner = runnerFor(out=stdout, err=["warming up", ""], code=0)
    run = runner.start(["segment"], onEvent=lambda r, e: seen.append(e), onFinished=onFinished)
    assert run.wait(timeout=5) == DONE
    assert states == [IMPORTING]
    assert [e.get("done", e["event"]) for e in seen] == [1, 2, "log", 4, "result"]
    # a streak of progress events of one stage is kept as its latest; onEvent saw every one
    assert [e["event"] for e in run.events] == ["progress", "log", "progress", "result"]
    assert run.lastProgress["done"] == 4 and run.result["output"] == "/data/label.nrrd"
    assert set(run.logLines) == {"a plain line on stdout", '{"event": broken json', "warming up"}
    assert run.returnCode == 0 and not os.path.exists(run.workDir)
    assert runner.activeRun is None


def test_import_left_to_the_caller_then_finished_later():
    run = runnerFor(out=[event("result")], code=0).start(["info"], onFinished=lambda r: None)
    assert run.wait(timeout=5) == IMPORTING and os.path.isdir(run.workDir)
    assert run.finishImport() == DONE and not os.path.exists(run.workDir)
    assert run.finishImport() == DONE  # a second call changes nothing


def test_import_error_fails_the_run():
    run = runnerFor(code=0).start(["segment"], onFinished=lambda r: r.finishImport("label map does not match the volume"))
    assert run.wait(timeout=5) == FAILED
    assert run.errorMessage == "label map does not match the volume"


def test_onFinished_raising_fails_the_run():
    def badImport(run):
        raise ValueError("no such segment id")

    run = runnerFor(code=0).start(["segment"], onFinished=badImport)
    assert run.wait(timeout=5) == FAILED
    assert "Importing the result failed: no such segment id" in run.errorMessage
    assert any("ValueError" in line for line in run.logLines)
    assert not os.path.exists(run.workDir)


def test_bad_input_fails_with_the_cli_message_and_hint():
    stdout = [event("error", message="input.nrrd is not a 3D volume", hint="pick a CT volume", exit_code=2)]
    run = runnerFor(out=stdout, code=2).start(["segment"])
    assert run.wait(timeout=5) == FAILED
    assert (run.errorMessage, run.errorHint, run.returnCode) == ("input.nrrd is not a 3D volume", "pick a CT volume", 2)


def test_cancel_writes_the_cancel_file_and_exit_3_is_cancelled():
    launched = []
    run = runnerFor(launched, code=3, untilCancelled=True).start(["finetune"])
    assert run.poll() == RUNNING and run.poll() == RUNNING
    run.cancel()
    assert os.path.exists(launched[0].cancelFile)
    assert run.wait(timeout=5) == CANCELLED and run.returnCode == 3 and run.cancelRequested
    assert not os.path.exists(run.workDir)


def test_exit_3_without_our_cancel_is_still_cancelled():
    assert runnerFor(code=3).start(["train"]).wait(timeout=5) == CANCELLED


@pytest.mark.parametrize("code, expected", [(-9, "SIGKILL"), (1, "exit code 1"), (139, "exit code 139")])
def test_crash_fails_naming_the_code_and_quoting_the_log(code, expected):
    stderr = ["Traceback (most recent call last):", '  File "x.py", line 1', "ZeroDivisionError: division by zero"]
    run = runnerFor(err=stderr, code=code).start(["segment"])
    assert run.wait(timeout=5) == FAILED
    assert expected in run.errorMessage and str(code) in run.errorMessage
    assert "ZeroDivisionError: division by zero" in run.errorMessage
    assert run.errorHint
    if code == -9:
        assert "memory" in run.errorHint


def test_internal_error_event_is_part_of_the_message():
    stdout = [event("error", message="internal error: KeyError: 'x'", hint="this is a bug in VQSeg", exit_code=1)]
    run = runnerFor(out=stdout, code=1).start(["segment"])
    assert run.wait(timeout=5) == FAILED
    assert "exit code 1" in run.errorMessage and "KeyError" in run.errorMessage and run.errorHint == "this is a bug in VQSeg"


def test_killed_after_our_cancel_is_cancelled_not_failed():
    run = runnerFor(code=-15, untilCancelled=True).start(["train"])
    run.cancel(graceSeconds=0)
    assert run.wait(timeout=5) == CANCELLED


def test_one_run_at_a_time_and_keepWorkDir():
    runner = runnerFor(code=3, untilCancelled=True)
    run = runner.start(["info"], keepWorkDir=True)
    with pytest.raises(CliRunnerError, match="already in progress"):
        runner.start(["info"])
    run.cancel()
    assert run.wait(timeout=5) == CANCELLED
    assert os.path.isdir(run.workDir)
    run.cleanup()
    assert not os.path.exists(run.workDir)
    second = runner.start(["info"])  # the runner is free again
    assert second.poll() == RUNNING
    second.cancel()
    assert second.wait(timeout=5) == CANCELLED


def test_caller_made_workDir_with_inputs_is_used():
    runner = runnerFor(code=0)
    workDir = runner.createWorkDir()
    with open(os.path.join(workDir, "cancel"), "w"):
        pass  # a stale cancel file from a reused folder must not cancel the new run
    run = runner.start(["segment"], workDir=workDir)
    assert run.workDir == workDir and not os.path.exists(run.cancelFile)
    assert run.wait(timeout=5) == DONE and not os.path.exists(workDir)


def test_onEvent_errors_are_logged_and_the_run_goes_on():
    def broken(run, event):
        raise RuntimeError("widget gone")

    run = runnerFor(out=[event("result")], code=0).start(["info"], onEvent=broken)
    assert run.wait(timeout=5) == DONE
    assert any("widget gone" in line for line in run.logLines)


def test_launch_failure_is_a_clear_error_and_leaves_nothing():
    def popen(command, **options):
        raise FileNotFoundError(2, "No such file or directory", command[0])

    runner = CliRunner("/no/such/python", "/opt/core", popen=popen)
    made = []
    runner.createWorkDir = lambda: made.append(process.tempfile.mkdtemp(prefix="VQSeg-")) or made[-1]
    with pytest.raises(CliRunnerError, match="/no/such/python"):
        runner.start(["info"])
    assert not os.path.exists(made[0]) and runner.activeRun is None


def test_log_lines_are_capped():
    lines = [f"line {i}" for i in range(process.LOG_LINES_KEPT * 3)]
    run = runnerFor(err=lines, code=0).start(["info"])
    assert run.wait(timeout=5) == DONE
    assert len(run.logLines) <= process.LOG_LINES_KEPT * 1.25 and run.logLines[-1] == lines[-1]
