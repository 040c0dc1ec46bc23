"""`vqseg synth` end to end, and cancellation (cancel file, SIGTERM) that leaves nothing half-written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import SimpleITK as sitk
from slicerio.segmentation import read_segmentation

from helpers.paths import REPO

SMALL = ("--size", "96", "96", "--slices", "24", "--spacing", "3", "3", "4")
LARGE = ("--size", "512", "512", "--slices", "300", "--spacing", "0.7", "0.7", "1.5")


def test_synth_writes_ct_and_label_on_one_grid(cli, tmp_path):
    run = cli("synth", tmp_path / "ct.nii.gz", "--label", tmp_path / "truth.seg.nrrd", *SMALL, "--seed", "3", "--diameter", "30", "--events")
    assert run.returncode == 0, run.stderr
    stages = {(e["stage"], e["done"], e["total"]) for e in run.events if e["event"] == "progress"}
    assert ("generate", 1, 1) in stages and ("write", 2, 2) in stages
    result = run.last
    assert result["event"] == "result" and result["size"] == [96, 96, 24]

    ct = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    label = sitk.ReadImage(str(tmp_path / "truth.seg.nrrd"))
    assert ct.GetSize() == label.GetSize() == (96, 96, 24)
    np.testing.assert_allclose(ct.GetSpacing(), (3, 3, 4))
    np.testing.assert_allclose(label.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    voxels = int(sitk.GetArrayFromImage(label).sum())
    assert voxels > 0
    assert abs(result["tumour_volume_ml"] - voxels * 3 * 3 * 4 / 1000) < 0.01  # the reported volume is the label's
    (segment,) = read_segmentation(str(tmp_path / "truth.seg.nrrd"), skip_voxels=True)["segments"]
    assert segment["id"] == "lung_tumour" and segment["name"] == "Lung tumour"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "truth.seg.nrrd"]


def test_no_tumour_writes_an_empty_label_and_says_so(cli, tmp_path):
    run = cli("synth", tmp_path / "ct.nii.gz", "--label", tmp_path / "truth.nii.gz", "--size", "48", "48", "--slices", "8",
              "--spacing", "3", "3", "4", "--no-tumour", "--events")  # too small for any tumour: no fit check without one
    assert run.returncode == 0, run.stderr
    assert (run.last["tumour_volume_ml"], run.last["tumour_diameter_mm"], run.last["tumour_centre_mm"]) == (0.0, 0.0, None)
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "truth.nii.gz"))).any()


def test_same_seed_gives_the_same_file_content(cli, tmp_path):
    for name in ("a", "b"):
        assert cli("synth", tmp_path / f"{name}.nrrd", *SMALL, "--seed", "7").returncode == 0
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a.nrrd")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b.nrrd")))
    np.testing.assert_array_equal(a, b)


def _start_large_synth(tmp_path, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "VQSegCore", "synth", str(tmp_path / "ct.nii.gz"), "--label", str(tmp_path / "label.nii.gz"), *LARGE, "--events", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(process, stage: str, done: int) -> None:
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["stage"] == stage and event["done"] == done:
            return
    raise AssertionError(f"no progress event {stage} {done}; stderr: {process.stderr.read()}")


def _final_error(process) -> dict:
    remaining = [json.loads(line) for line in process.stdout]
    process.wait(timeout=60)
    return remaining[-1]


def test_sigterm_during_generation_exits_3_and_writes_nothing(tmp_path):
    process = _start_large_synth(tmp_path)
    _wait_for(process, "generate", 0)
    process.send_signal(signal.SIGTERM)
    last = _final_error(process)
    assert process.returncode == 3
    assert last["event"] == "error" and last["exit_code"] == 3
    assert list(tmp_path.iterdir()) == []


def test_cancel_file_during_generation_exits_3_and_writes_nothing(tmp_path):
    cancel_file = tmp_path / "cancel.flag"
    process = _start_large_synth(tmp_path, "--cancel-file", str(cancel_file))
    _wait_for(process, "generate", 0)
    cancel_file.touch()
    _final_error(process)
    assert process.returncode == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cancel.flag"]


def test_sigterm_while_writing_leaves_only_complete_files(tmp_path):
    process = _start_large_synth(tmp_path)
    _wait_for(process, "write", 0)
    process.send_signal(signal.SIGTERM)
    _final_error(process)
    assert process.returncode == 3
    names = sorted(p.name for p in tmp_path.iterdir())
    assert all(not name.startswith(".") for name in names)  # no temporaries
    for name in names:  # whatever was renamed into place is whole
        assert sitk.ReadImage(str(tmp_path / name)).GetSize() == (512, 512, 300)
