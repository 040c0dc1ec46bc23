"""Bad input at the command line: exit code 2, one clear message naming the file, nothing written."""

from __future__ import annotations

import pytest

from helpers.badfiles import CASES, bad_inputs


@pytest.mark.parametrize("case", CASES)
def test_inspect_refuses_bad_input_with_exit_2(cli, tmp_path, case):
    path, phrase = bad_inputs(tmp_path)[case]
    run = cli("inspect", path, "--events")
    assert run.returncode == 2
    errors = [event for event in run.events if event["event"] == "error"]  # stdout parses as events
    assert len(errors) == 1
    assert str(path) in errors[0]["message"] and phrase in errors[0]["message"]
    assert errors[0]["hint"]
    assert "Traceback" not in run.stderr


def test_human_mode_error_is_one_message_and_a_hint(cli, tmp_path):
    run = cli("inspect", tmp_path / "absent.nrrd")
    assert run.returncode == 2
    assert run.stdout == ""
    lines = [line for line in run.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert lines == [f"error: {tmp_path / 'absent.nrrd'}: no such file or folder", "hint: check the path"]


@pytest.mark.parametrize(
    "outputs, phrase",
    [
        (lambda d: [d / "missing_folder" / "ct.nii.gz"], "does not exist"),
        (lambda d: [d / "ct.nii.gz", "--label", d / "a_file.txt" / "label.nii.gz"], "does not exist"),
        (lambda d: [d / "ct.png"], "suffix"),
        (lambda d: [d / "ct.nii.gz", "--label", d / "label.vtk"], "suffix"),
        (lambda d: [d / "ct.seg.nrrd"], "cannot write an image"),
    ],
)
def test_unwritable_output_exits_2_and_leaves_nothing(cli, tmp_path, outputs, phrase):
    (tmp_path / "a_file.txt").write_text("a file, not a folder")
    run = cli("synth", *outputs(tmp_path), "--size", "64", "64", "--slices", "20", "--spacing", "4", "4", "5", "--events")
    assert run.returncode == 2
    assert phrase in run.last["message"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a_file.txt"]


def test_impossible_phantom_is_bad_input(cli, tmp_path):
    run = cli("synth", tmp_path / "ct.nii.gz", "--diameter", "200", "--size", "64", "64", "--slices", "20", "--events")
    assert run.returncode == 2 and "phantom" in run.last["message"]
    assert list(tmp_path.iterdir()) == []
