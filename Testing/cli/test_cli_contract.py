"""The CLI contract (docs/architecture.md §3.1): exit codes 0/1/2/3, JSON-only stdout with --events, help and info."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest

from VQSegCore.cli.app import run_cli
from VQSegCore.errors import Cancelled, InputError


def fake_command(name: str, behaviour):
    """A command for the framework alone; `behaviour(args, context)` returns the result or raises."""

    def register(subparsers):
        parser = subparsers.add_parser(name)
        parser.set_defaults(run=behaviour)
        return parser

    return types.SimpleNamespace(register=register)


def noisy(args, context):
    print("stray print from a library")
    os.write(1, b"stray bytes from C code\n")
    context.reporter.progress("work", 1, 2)
    context.reporter.log("half way")
    return {"answer": 42}


def buggy(args, context):
    return {}["missing"]


def bad_input(args, context):
    raise InputError("/data/x.nii.gz: the image is 2D (8×8); a 3D volume is needed", "give the whole CT series")


def cancelled(args, context):
    raise Cancelled()


def _stdout_events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_events_mode_keeps_stdout_pure_json_even_when_code_prints(capfd):
    code = run_cli(["noisy", "--events"], [fake_command("noisy", noisy)])
    out, err = capfd.readouterr()
    assert code == 0
    kinds = [event["event"] for event in _stdout_events(out)]  # every stdout line parses
    assert kinds == ["progress", "log", "result"]
    assert _stdout_events(out)[-1]["answer"] == 42
    assert "stray print" in err and "stray bytes" in err


def test_human_mode_prints_summary_on_stdout_and_progress_on_stderr(capfd):
    code = run_cli(["noisy"], [fake_command("noisy", noisy)])
    out, err = capfd.readouterr()
    assert code == 0
    assert "answer: 42" in out
    assert "half way" in err and "work" in err


@pytest.mark.parametrize(
    "behaviour, expected_code, phrase",
    [(bad_input, 2, "a 3D volume is needed"), (cancelled, 3, "cancelled"), (buggy, 1, "internal error: KeyError")],
)
def test_outcomes_map_to_exit_codes_and_one_error_event(capfd, behaviour, expected_code, phrase):
    code = run_cli(["--events", "job"], [fake_command("job", behaviour)])
    out, err = capfd.readouterr()
    assert code == expected_code
    events = _stdout_events(out)
    errors = [event for event in events if event["event"] == "error"]
    assert len(errors) == 1 and phrase in errors[0]["message"] and errors[0]["exit_code"] == expected_code
    assert not any(event["event"] == "result" for event in events)
    if expected_code == 1:
        assert "Traceback" in err  # a bug leaves its traceback in the log


def test_argument_errors_exit_2_with_an_event(capfd):
    code = run_cli(["--events", "job", "--no-such-option"], [fake_command("job", noisy)])
    out, _ = capfd.readouterr()
    assert code == 2
    assert _stdout_events(out)[-1]["event"] == "error"
    assert "--no-such-option" in _stdout_events(out)[-1]["message"]


def test_existing_cancel_file_stops_before_any_work(tmp_path, capfd):
    calls = []
    cancel_file = tmp_path / "cancel"
    cancel_file.touch()
    code = run_cli(["job", "--cancel-file", str(cancel_file)], [fake_command("job", lambda a, c: calls.append(1) or {})])
    capfd.readouterr()
    assert code == 3 and calls == []


def test_help_lists_commands(cli):
    run = cli("--help")
    assert run.returncode == 0
    for command in ("info", "inspect", "synth"):
        assert command in run.stdout


def test_version(cli):
    run = cli("--version")
    assert run.returncode == 0 and run.stdout.startswith("vqseg ")


def test_info_human(cli):
    run = cli("info")
    assert run.returncode == 0
    for key in ("vqseg:", "torch:", "SimpleITK:", "default: cpu", "threads:", "vqseg_home:"):
        assert key in run.stdout


def test_info_events_reports_device_threads_and_home(cli, tmp_path):
    run = cli("info", "--events", env={"VQSEG_HOME": str(tmp_path / "home")})
    assert run.returncode == 0
    (result,) = run.events
    assert result["event"] == "result"
    assert result["device"]["default"] in {"cpu", "cuda", "mps"}
    assert result["threads"]["torch"] >= 1
    assert result["vqseg_home"] == str(tmp_path / "home")
    assert result["packages"]["torch"].startswith("2.")


def test_no_command_is_a_usage_error(cli):
    run = cli("--events")
    assert run.returncode == 2 and run.last["event"] == "error"


def test_python_m_and_console_script_are_the_same_program():
    script = os.path.join(os.path.dirname(sys.executable), "vqseg")
    if not os.path.exists(script):
        pytest.skip("console script not installed in this environment")
    import subprocess

    via_script = subprocess.run([script, "--help"], capture_output=True, text=True)
    via_module = subprocess.run([sys.executable, "-m", "VQSegCore", "--help"], capture_output=True, text=True)
    assert via_script.returncode == via_module.returncode == 0
    assert via_script.stdout == via_module.stdout
