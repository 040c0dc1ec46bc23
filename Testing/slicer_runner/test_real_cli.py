"""The runner with the real VQSegCore CLI (CPU, no model): one success, one bad-argument failure."""

import os
import sys
from pathlib import Path

from VQSegLib.process import DONE, FAILED, IMPORTING, CliRunner

REPO = Path(__file__).resolve().parents[2]  # holds the VQSegCore package


def test_info_runs_to_done_with_a_result():
    runner = CliRunner(sys.executable, str(REPO), environment={"CUDA_VISIBLE_DEVICES": "-1"})
    states = []

    def onFinished(run):
        states.append(run.state)
        run.finishImport()

    run = runner.start(["info"], onFinished=onFinished)
    assert run.wait(timeout=120) == DONE, (run.errorMessage, run.logLines[-10:])
    assert states == [IMPORTING] and run.returnCode == 0
    assert run.result["event"] == "result" and run.result["vqseg"]
    assert run.result["device"]["cuda"] == "none"
    assert not os.path.exists(run.workDir)


def test_missing_arguments_fail_with_the_cli_message_and_hint():
    run = CliRunner(sys.executable, str(REPO)).start(["segment"])
    assert run.wait(timeout=60) == FAILED
    assert run.returnCode == 2
    assert "required" in run.errorMessage and "--help" in run.errorHint
