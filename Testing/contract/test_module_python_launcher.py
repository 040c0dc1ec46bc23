"""Which Python the module starts the CLI with: Slicer's PythonSlicer launcher, looked up for each run."""

import os
import stat
import sys

from VQSegLib import locations
from VQSegLib.process import CliRunner


def _launcher(folder, name="PythonSlicer"):
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_pythonslicer_on_path_wins_over_the_slicer_application(tmp_path, monkeypatch):
    launcher = _launcher(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setattr(sys, "executable", "/opt/Slicer/bin/SlicerApp-real")
    assert locations.pythonExecutable() == str(launcher)


def test_without_a_launcher_the_slicer_application_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no PythonSlicer, no python3
    monkeypatch.setattr(sys, "executable", "/opt/Slicer/bin/SlicerApp-real")
    assert "SlicerApp" not in locations.pythonExecutable()
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3.11")
    assert locations.pythonExecutable() == "/usr/bin/python3.11"


def test_the_runner_asks_for_the_python_at_each_run():
    answers = iter(["/first/python", "/second/PythonSlicer"])
    runner = CliRunner(lambda: next(answers), "/core")
    assert runner.commandLine(["info"], "/c")[0] == "/first/python"
    assert runner.commandLine(["info"], "/c")[0] == "/second/PythonSlicer"
