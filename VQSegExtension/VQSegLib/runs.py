"""One CLI command for the module, run blocking (scripts, tests) or followed by a timer (the GUI).

The contract every VQSegLogic action keeps:
  waitForCompletion=True   block; return the outcome; raise VQSegRunError if the run failed or was cancelled
  waitForCompletion=False  return the CliRun at once; a qt.QTimer calls run.poll() on the main thread
                           (the runner's reader threads never touch Qt) and onCompleted(run, outcome) is
                           called once the run ends, outcome None unless run.state is DONE
`importResult(run)` turns a successful run into the outcome (loading files into the scene); it runs
on the main thread while the run is IMPORTING, and its failure fails the run.
qt is imported only when a timer is needed.
"""

import logging
import shutil
from typing import Callable, List, Optional

from VQSegLib.process import CANCELLED, DONE


class VQSegRunError(RuntimeError):
    """A CLI run failed or was cancelled (blocking calls raise it)."""

    def __init__(self, run):
        if run.state == CANCELLED:
            message = "The VQSeg run was cancelled."
        else:
            message = run.errorMessage or "The VQSeg run failed."
            if run.errorHint:
                message += "\n" + run.errorHint
        super().__init__(message)
        self.run = run


class FinishedRun:
    """Stands in for a CliRun that had nothing to do (listing a pool that does not exist yet)."""

    def __init__(self, result: dict):
        self.state = DONE
        self.result = result
        self.errorMessage = ""
        self.errorHint = ""
        self.logLines: List[str] = []


class RunController:
    """Owns the module's one CliRunner and the timer that follows its current run."""

    POLL_INTERVAL_MS = 200

    def __init__(self, runner):
        self.runner = runner
        self._pollTimer = None

    def isBusy(self) -> bool:
        return self.runner.activeRun is not None

    def cancel(self) -> None:
        run = self.runner.activeRun
        if run is not None:
            run.cancel()

    def shutdown(self) -> None:
        """Module cleanup (reload, Slicer quitting): stop following and end the run now.

        Nobody polls after this, so the cancel file alone would leave the child running until its
        next check; SIGTERM is the CLI's cooperative cancel (exit 3, checkpoint kept).
        """
        if self._pollTimer is not None:
            self._pollTimer.stop()
            self._pollTimer = None
        run = self.runner.activeRun
        if run is not None:
            run.cancel(graceSeconds=0)

    def run(self, arguments: List[str], environment: dict, importResult: Optional[Callable] = None,
            onEvent: Optional[Callable] = None, onCompleted: Optional[Callable] = None, waitForCompletion: bool = True,
            workDir: Optional[str] = None):
        """Start `python -m VQSegCore <arguments>` with `environment` added; see the module docstring."""
        self.runner.environment = dict(environment)
        outcome = {}

        def onFinished(run):
            try:
                outcome["value"] = importResult(run) if importResult else run.result
            except Exception as problem:
                logging.exception("VQSeg: importing the result failed")
                run.finishImport(errorMessage=f"Importing the result failed: {problem}")
                return
            run.finishImport()

        try:
            run = self.runner.start(arguments, onEvent=onEvent, onFinished=onFinished, workDir=workDir)
        except Exception:
            if workDir:  # the caller wrote inputs there for a run that never started
                shutil.rmtree(workDir, ignore_errors=True)
            raise

        def completed():
            value = outcome.get("value") if run.state == DONE else None
            if onCompleted:
                onCompleted(run, value)
            return value

        if waitForCompletion:
            run.wait()
            value = completed()
            if run.state != DONE:
                raise VQSegRunError(run)
            return value
        self._follow(run, completed)
        return run

    def finishWithoutRun(self, result: dict, onCompleted: Optional[Callable] = None, waitForCompletion: bool = True):
        """The same contract for an action that needed no process."""
        if waitForCompletion:
            if onCompleted:
                onCompleted(FinishedRun(result), result)
            return result
        if onCompleted:
            import qt

            qt.QTimer.singleShot(0, lambda: onCompleted(FinishedRun(result), result))
        return None

    def _follow(self, run, whenFinished: Callable) -> None:
        import qt

        timer = qt.QTimer()
        timer.setInterval(self.POLL_INTERVAL_MS)

        def tick():
            try:
                run.poll()
            except Exception:
                logging.exception("VQSeg: following the run failed; stopping it")
                run.cancel(graceSeconds=0)
            if run.isFinished():
                timer.stop()
                self._pollTimer = None
                whenFinished()

        timer.timeout.connect(tick)
        self._pollTimer = timer  # keep a reference: the timer must outlive this call
        timer.start()
