"""Run the VQSeg command line as a child process without freezing Slicer.

The Slicer module starts `<python> -m VQSegCore --events --cancel-file <workDir>/cancel <command> ...`
(docs/architecture.md §3.1) through a `CliRunner`. Two daemon threads read the child's stdout and stderr
into a queue; they never touch Qt. Everything else happens in `CliRun.poll()`, which the caller
runs on the main thread (a qt.QTimer in the widget, or `wait()` in scripts and tests): it turns
stdout lines into events, calls the callbacks, enforces the cancel deadline and moves the state
machine:

    idle -> running -> importing -> done | failed
            running -> cancelled | failed

Cancel is cooperative first (the cancel file; the CLI exits 3), then forced: the child runs in
its own process group/session, so the whole tree is killed, including the python that the
PythonSlicer launcher starts (a plain Popen.kill() would only stop the launcher).

No slicer or qt import here: plain pytest covers it, and importing it costs nothing.
Python 3.9 syntax (Slicer 5.8).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Callable, List, Optional

IDLE = "idle"
RUNNING = "running"
IMPORTING = "importing"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
FINAL_STATES = (DONE, FAILED, CANCELLED)

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 3

CANCEL_FILE_NAME = "cancel"
LOG_LINES_KEPT = 2000
# After the child exits, how long to wait for a grandchild that still holds our pipes.
OUTPUT_DRAIN_SECONDS = 2.0
# After SIGTERM to the process group, how long before SIGKILL.
KILL_AFTER_TERM_SECONDS = 3.0
# How many log lines a failure message quotes.
FAILURE_LOG_LINES = 12

_IS_WINDOWS = os.name == "nt"


class CliRunnerError(RuntimeError):
    """The runner cannot start a run (one is already active, or the executable cannot be launched)."""


def parseEventLine(line: str) -> Optional[dict]:
    """The event on one stdout line, or None when the line is plain log text. The format's one owner,
    VQSegCore.events, decodes it; imported here, when VQSegCore is on sys.path (the module puts it there)."""
    from VQSegCore import events

    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        return events.decode(text)
    except ValueError:  # json.JSONDecodeError is a ValueError too
        return None


class CliRun:
    """One run of the CLI. Created by `CliRunner.start`; drive it with `poll()` on the main thread."""

    def __init__(self, workDir: str, onEvent=None, onFinished=None, keepWorkDir: bool = False, clock=time.monotonic):
        self.state = IDLE
        self.events: List[dict] = []
        self.lastProgress: Optional[dict] = None
        self.result: Optional[dict] = None
        self.lastError: Optional[dict] = None
        self.errorMessage = ""
        self.errorHint = ""
        self.returnCode: Optional[int] = None
        self.workDir = workDir
        self.cancelFile = os.path.join(workDir, CANCEL_FILE_NAME)
        self.logLines: List[str] = []
        self.command: List[str] = []
        self.killAfterTermSeconds = KILL_AFTER_TERM_SECONDS
        self.outputDrainSeconds = OUTPUT_DRAIN_SECONDS

        self._onEvent = onEvent
        self._onFinished = onFinished
        self._keepWorkDir = keepWorkDir
        self._clock = clock
        self._process = None
        self._lines: "queue.Queue" = queue.Queue()
        self._openStreams = 0
        self._exitSeenAt: Optional[float] = None
        self._cancelRequested = False
        self._killDeadline: Optional[float] = None
        self._termSentAt: Optional[float] = None
        self._leftoversKilledAt: Optional[float] = None
        self._importHandedOver = False

    # ---- public API -------------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def cancelRequested(self) -> bool:
        return self._cancelRequested

    def isFinished(self) -> bool:
        return self.state in FINAL_STATES

    def poll(self) -> str:
        """Handle what the child said since the last call and advance the state; returns the state."""
        if self.state != RUNNING:
            return self.state
        self._drainOutput()
        self._enforceCancelDeadline()
        self._settleIfExited()
        return self.state

    def wait(self, timeout: Optional[float] = None, interval: float = 0.02) -> str:
        """Block, polling, until a final state (or until the import is handed to the caller, or timeout)."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            state = self.poll()
            if state in FINAL_STATES or (state == IMPORTING and self._importHandedOver):
                return state
            if deadline is not None and self._clock() >= deadline:
                return state
            time.sleep(interval)

    def cancel(self, graceSeconds: float = 10) -> None:
        """Ask the CLI to stop (exit 3); kill the process tree if it still runs after graceSeconds.

        The deadline is checked by poll(); graceSeconds=0 sends SIGTERM to the tree at once (for
        a widget that goes away and will not poll again).
        """
        if self.state != RUNNING:
            return
        now = self._clock()
        if not self._cancelRequested:
            self._cancelRequested = True
            try:
                with open(self.cancelFile, "w") as stream:
                    stream.write("cancel\n")
            except OSError as problem:  # the kill below still stops it
                self._log(f"could not write the cancel file: {problem}")
        deadline = now + max(0.0, graceSeconds)
        if self._killDeadline is None or deadline < self._killDeadline:
            self._killDeadline = deadline
        if graceSeconds <= 0:
            self._enforceCancelDeadline()

    def finishImport(self, errorMessage: Optional[str] = None, errorHint: str = "") -> str:
        """The caller has imported the result (state importing): done, or failed with errorMessage."""
        if self.state in FINAL_STATES:
            return self.state  # e.g. called again after onFinished already finished the import
        if self.state != IMPORTING:
            raise RuntimeError(f"finishImport() needs state '{IMPORTING}', the run is '{self.state}'")
        if errorMessage:
            self._fail(errorMessage, errorHint)
        else:
            self._enterFinalState(DONE)
        return self.state

    def cleanup(self) -> None:
        """Remove workDir (done automatically at a final state unless keepWorkDir)."""
        if self.workDir and os.path.isdir(self.workDir):
            shutil.rmtree(self.workDir, ignore_errors=True)

    # ---- launching (called by CliRunner) --------------------------------------------------------

    def _launch(self, popen, command: List[str], environment: dict) -> None:
        self.command = list(command)
        options = dict(
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            cwd=self.workDir,  # `python -m` puts the cwd first on sys.path: keep stray VQSegCore folders out
        )
        if _IS_WINDOWS:
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            options["start_new_session"] = True  # own process group: killpg reaches the grandchildren
        self._process = popen(command, **options)
        self.state = RUNNING
        for name, stream in (("stdout", self._process.stdout), ("stderr", self._process.stderr)):
            self._openStreams += 1
            reader = threading.Thread(target=_readLines, args=(stream, name, self._lines), name=f"VQSeg {name} reader", daemon=True)
            reader.start()

    # ---- output ---------------------------------------------------------------------------------

    def _drainOutput(self) -> None:
        while True:
            try:
                streamName, text = self._lines.get_nowait()
            except queue.Empty:
                return
            if text is None:
                self._openStreams -= 1
            else:
                self._handleLine(streamName, text)

    def _handleLine(self, streamName: str, text: str) -> None:
        if streamName == "stdout":
            event = parseEventLine(text)
            if event is not None:
                self._handleEvent(event)
                return
        if text.strip():
            self._log(text)

    def _handleEvent(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.lastProgress = event
            previous = self.events[-1] if self.events else None
            # A long training run sends one progress event per iteration: keep the latest of a streak.
            if previous is not None and previous.get("event") == "progress" and previous.get("stage") == event.get("stage"):
                self.events[-1] = event
            else:
                self.events.append(event)
        else:
            self.events.append(event)
        if kind == "result":
            self.result = event
        elif kind == "error":
            self.lastError = event
        if self._onEvent is not None:
            try:
                self._onEvent(self, event)
            except Exception:  # a display bug must not stop the run from being followed
                self._log("onEvent callback failed:\n" + traceback.format_exc().rstrip())
                logging.exception("VQSeg: onEvent callback failed")

    def _log(self, text: str) -> None:
        self.logLines.append(text)
        if len(self.logLines) > LOG_LINES_KEPT + LOG_LINES_KEPT // 4:
            del self.logLines[: len(self.logLines) - LOG_LINES_KEPT]

    # ---- ending ---------------------------------------------------------------------------------

    def _enforceCancelDeadline(self) -> None:
        if self._killDeadline is None or self._process.poll() is not None:
            return
        now = self._clock()
        if now < self._killDeadline:
            return
        if self._termSentAt is None:
            self._log("VQSeg did not stop after the cancel request: terminating its process tree")
            self._termSentAt = now
            self._killProcessTree(force=False)
        elif now - self._termSentAt >= self.killAfterTermSeconds:
            self._killProcessTree(force=True)

    def _settleIfExited(self) -> None:
        code = self._process.poll()
        if code is None:
            return
        now = self._clock()
        if self._exitSeenAt is None:
            self._exitSeenAt = now
        if self._openStreams > 0:
            if now - self._exitSeenAt < self.outputDrainSeconds:
                return
            if self._leftoversKilledAt is None:
                # A leftover grandchild keeps the pipes open; it belongs to this run, so it goes too.
                self._log("child processes outlived the VQSeg process: killing them")
                self._killProcessTree(force=True)
                self._leftoversKilledAt = now
                return  # the readers see the end of output on one of the next polls
            if now - self._leftoversKilledAt < self.outputDrainSeconds:
                return
            # Still open (a grandchild left the process group): stop waiting; the daemon readers stay behind.
        self.returnCode = code
        if code == EXIT_OK:
            self._startImport()
        elif code == EXIT_CANCELLED or self._cancelRequested:
            self._enterFinalState(CANCELLED)
        elif code == EXIT_BAD_INPUT:
            self._fail(self._errorEventMessage() or f"VQSeg rejected the input (exit code {code}).\n{self._recentLog()}",
                       self._errorEventHint())
        else:
            self._fail(_crashMessage(code, self._errorEventMessage(), self._recentLog()), self._errorEventHint() or _crashHint(code))

    def _startImport(self) -> None:
        self.state = IMPORTING
        if self._onFinished is None:
            self._enterFinalState(DONE)  # nothing to import
            return
        try:
            self._onFinished(self)
        except Exception as problem:
            self._log("onFinished callback failed:\n" + traceback.format_exc().rstrip())
            self._fail(f"Importing the result failed: {problem}", "See the log for details.")
            return
        self._importHandedOver = True  # the caller finishes with finishImport() if it has not yet

    def _fail(self, message: str, hint: str = "") -> None:
        self.errorMessage = message
        self.errorHint = hint
        self._enterFinalState(FAILED)

    def _enterFinalState(self, state: str) -> None:
        self.state = state
        if self._openStreams == 0:  # both readers are done: release the pipes now, not at garbage collection
            for stream in (self._process.stdout, self._process.stderr):
                try:
                    stream.close()
                except (OSError, AttributeError):
                    pass
        if not self._keepWorkDir:
            self.cleanup()

    def _errorEventMessage(self) -> str:
        return str(self.lastError.get("message", "")) if self.lastError else ""

    def _errorEventHint(self) -> str:
        return str(self.lastError.get("hint", "")) if self.lastError else ""

    def _recentLog(self) -> str:
        lines = self.logLines[-FAILURE_LOG_LINES:]
        return "Last output:\n" + "\n".join(lines) if lines else "There was no output."

    def _killProcessTree(self, force: bool) -> None:
        process = self._process
        if process is None:
            return
        try:
            if _IS_WINDOWS:
                subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0), check=False)
            else:
                # start_new_session made the child the leader of a group whose id is its pid.
                os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
        except (ProcessLookupError, PermissionError, OSError):
            pass  # already gone


def _readLines(stream, streamName: str, lines: "queue.Queue") -> None:
    """Reader thread: one queue item per line, then (name, None) at end of stream. Never touches Qt."""
    try:
        while True:
            raw = stream.readline()
            if not raw:
                break
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            lines.put((streamName, text.rstrip("\r\n")))
    except (OSError, ValueError):  # the pipe was closed under us
        pass
    finally:
        lines.put((streamName, None))


def _signalName(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _crashMessage(code: int, errorMessage: str, recentLog: str) -> str:
    if code < 0:
        headline = f"VQSeg stopped unexpectedly: killed by {_signalName(-code)} (exit code {code})."
    else:
        headline = f"VQSeg stopped unexpectedly (exit code {code})."
    if errorMessage:
        headline += f"\n{errorMessage}"
    return f"{headline}\n{recentLog}"


def _crashHint(code: int) -> str:
    if code == -getattr(signal, "SIGKILL", 9):
        return ("The system killed the process, which usually means it ran out of memory: "
                "try a region of interest, a smaller batch size or the CPU.")
    return "See the log above; if it shows a Python traceback, please report it."


class CliRunner:
    """Starts CLI runs, one at a time, with `pythonExecutable -m VQSegCore`.

    `pythonExecutable` is a path, or a function asked again for each run (Slicer sets up its Python
    launcher only after modules are created, so the answer at start-up may be wrong).
    """

    def __init__(self, pythonExecutable, coreSearchPath: str, environment: Optional[dict] = None, popen=subprocess.Popen):
        self.pythonExecutable = pythonExecutable
        self.coreSearchPath = coreSearchPath
        if coreSearchPath and coreSearchPath not in sys.path:  # parseEventLine decodes with VQSegCore.events
            sys.path.insert(0, coreSearchPath)
        self.environment = dict(environment or {})
        self._popen = popen
        self._activeRun: Optional[CliRun] = None

    @property
    def activeRun(self) -> Optional[CliRun]:
        """The run that is still going (running or importing), or None."""
        run = self._activeRun
        return run if run is not None and run.state not in FINAL_STATES else None

    def createWorkDir(self) -> str:
        """A fresh temporary folder; write inputs there, then pass it to start(workDir=...)."""
        return tempfile.mkdtemp(prefix="VQSeg-")

    def commandLine(self, arguments: List[str], cancelFile: str) -> List[str]:
        # Global options go before the command: `vqseg --events --cancel-file PATH segment ...`.
        python = self.pythonExecutable() if callable(self.pythonExecutable) else self.pythonExecutable
        return [python, "-m", "VQSegCore", "--events", "--cancel-file", cancelFile, *[str(a) for a in arguments]]

    def childEnvironment(self) -> dict:
        environment = dict(os.environ)
        searchPath = [self.coreSearchPath] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
        environment["PYTHONPATH"] = os.pathsep.join(searchPath)
        environment["PYTHONUNBUFFERED"] = "1"  # events arrive as they happen, not when a buffer fills
        environment.update({str(k): str(v) for k, v in self.environment.items()})
        return environment

    def start(self, arguments: List[str], onEvent: Optional[Callable] = None, onFinished: Optional[Callable] = None,
              keepWorkDir: bool = False, workDir: Optional[str] = None) -> CliRun:
        """Launch `VQSegCore <arguments>` and return its CliRun (state running). Paths must be absolute."""
        if self.activeRun is not None:
            raise CliRunnerError(f"A VQSeg run is already in progress ({self.activeRun.state}); cancel it or wait for it to finish.")
        run = CliRun(workDir or self.createWorkDir(), onEvent=onEvent, onFinished=onFinished, keepWorkDir=keepWorkDir)
        if os.path.exists(run.cancelFile):
            os.remove(run.cancelFile)  # a reused folder must not cancel the new run at once
        command = self.commandLine(arguments, run.cancelFile)
        try:
            run._launch(self._popen, command, self.childEnvironment())
        except OSError as problem:
            if not keepWorkDir:
                run.cleanup()
            raise CliRunnerError(f"Could not start VQSeg with {command[0]}: {problem}") from problem
        self._activeRun = run
        return run


def progressFraction(event: Optional[dict]) -> Optional[float]:
    """done/total of a progress event in [0, 1]; None when unknown (no total, e.g. a time-budgeted run)."""
    if not event or event.get("event") != "progress":
        return None
    try:
        done, total = float(event.get("done", 0)), float(event.get("total", 0))
    except (TypeError, ValueError):
        return None
    if total <= 0:
        return None
    return min(1.0, max(0.0, done / total))


# stage -> (what the user reads, the unit counted); unknown stages are shown by name.
_STAGE_TEXT = {
    "segment": ("Segmenting", "slice"),
    "prepare": ("Preparing data", "case"),
    "train": ("Training", "iteration"),
    "validate": ("Validating", "case"),
    "evaluate": ("Evaluating", "case"),
    "verify": ("Verifying the pool", "case"),
    "add": ("Adding to the pool", "step"),
    "update": ("Updating the pool", "step"),
    "read": ("Reading", "file"),
    "write": ("Writing", "file"),
    "generate": ("Generating", "volume"),
}


def describeProgress(event: Optional[dict]) -> str:
    """Short text for a progress event, e.g. 'Segmenting: slice 30/70, about 40 s left'."""
    if not event or event.get("event") != "progress":
        return ""
    stage = str(event.get("stage") or "working")
    title, unit = _STAGE_TEXT.get(stage, (stage.replace("_", " ").capitalize(), ""))
    unit = str(event.get("unit") or unit)
    parts = []
    done, total = event.get("done"), event.get("total")
    if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
        parts.append(f"{unit} {int(done)}/{int(total)}".strip())
    elif isinstance(done, (int, float)) and done > 0:
        parts.append(f"{unit} {int(done)}".strip())
    seconds = _positiveNumber(event.get("eta_s")) or _positiveNumber(event.get("time_left_s"))  # budgeted training: time left
    finished = isinstance(total, (int, float)) and total > 0 and done == total
    if seconds and not finished:
        parts.append(f"about {formatDuration(seconds)} left")
    return f"{title}: {', '.join(parts)}" if parts else title


def formatDuration(seconds: float) -> str:
    """'8 s', '40 s', '3 min', '1 h 20 min': rounded, because an ETA is only an estimate."""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{max(1, int(round(seconds)))} s"
    if seconds < 57.5:
        return f"{int(round(seconds / 5.0) * 5)} s"
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _positiveNumber(value) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
