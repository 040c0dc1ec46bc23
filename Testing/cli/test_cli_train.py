"""`vqseg train`: outputs, events, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk

from VQSegCore.model import load_model
from helpers.toydata import make_dataset

TINY_ARGS = ["--base-width", "8", "--depth", "3", "--codebook-size", "64", "--spacing", "3", "3",
             "--batch-size", "2", "--crop-size", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


def test_train_writes_best_and_last_and_reports_losses(cli, dataset, tmp_path):
    out = tmp_path / "run"
    run = cli("train", "--dataset", dataset, "--out", out, "--iterations", "6", "--validate-every", "3", *TINY_ARGS, "--events")
    assert run.returncode == 0, run.stderr
    events = run.events
    train = [e for e in events if e.get("event") == "progress" and e.get("stage") == "train"]
    assert len(train) == 6
    for key in ("loss", "sup", "unsup", "vq", "rec", "codebook_fraction", "codebook_perplexity"):
        assert key in train[-1], key
    assert any(e.get("event") == "metric" and e.get("stage") == "validate" for e in events)
    assert events[-1]["event"] == "result"
    for name in ("best", "last"):
        assert (out / name / "card.json").is_file() and (out / name / "weights.safetensors").is_file()
        model, card = load_model(out / name)
        assert card["config"]["unet_base_width"] == 8
    # the same folder again without --resume is refused
    again = cli("train", "--dataset", dataset, "--out", out, "--iterations", "6", *TINY_ARGS, "--events")
    assert again.returncode == 2 and "--resume" in again.last["hint"]


def test_spec_without_labelled_train_cases_exits_2(cli, tmp_path):
    spec = make_dataset(tmp_path / "data", (("a", "train", False), ("c", "val", True)))
    run = cli("train", "--dataset", spec, "--out", tmp_path / "run", "--iterations", "2", *TINY_ARGS, "--events")
    assert run.returncode == 2 and "no labelled case" in run.last["message"]
    assert not (tmp_path / "run").exists()


def test_label_geometry_mismatch_and_missing_file_exit_2(cli, dataset, tmp_path):
    folder = dataset.parent
    label = sitk.ReadImage(str(folder / "a-label.nii.gz"))
    label.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(label, str(tmp_path / "shifted.nii.gz"))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"cases": [{"id": "a", "image": str(folder / "a.nii.gz"), "label": str(tmp_path / "shifted.nii.gz"), "split": "train"}]}))
    run = cli("train", "--dataset", spec, "--out", tmp_path / "run", "--iterations", "2", *TINY_ARGS, "--events")
    assert run.returncode == 2 and "geometry" in run.last["message"]
    spec.write_text(json.dumps({"cases": [{"id": "a", "image": str(tmp_path / "gone.nii.gz"), "split": "train"}]}))
    run = cli("train", "--dataset", spec, "--out", tmp_path / "run2", "--iterations", "2", *TINY_ARGS, "--events")
    assert run.returncode == 2 and "does not exist" in run.last["message"]


def test_cancel_file_exits_3_with_a_checkpoint(cli, dataset, tmp_path):
    out = tmp_path / "run"
    cancel = tmp_path / "cancel"
    # the cancel file appears once the run folder exists: a checkpoint of a started run must be written
    import subprocess, sys, time, os
    from helpers.paths import REPO
    proc = subprocess.Popen([sys.executable, "-m", "VQSegCore", "train", "--dataset", str(dataset), "--out", str(out),
                             "--iterations", "100000", "--checkpoint-every", "100000", "--validate-every", "100000",
                             *TINY_ARGS, "--events", "--cancel-file", str(cancel)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    stdout_lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        stdout_lines.append(line)
        event = json.loads(line)
        if event.get("stage") == "train" and event.get("done", 0) >= 2:
            cancel.touch()
            break
    out_text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["iteration"] >= 2
    resumed = subprocess.run([sys.executable, "-m", "VQSegCore", "train", "--dataset", str(dataset), "--out", str(out),
                              "--iterations", "100000", "--checkpoint-every", "100000", "--validate-every", "100000",
                              *TINY_ARGS, "--events", "--resume", "--cancel-file", str(cancel)],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 3  # the cancel file is still there: stops at once, but --resume is accepted
