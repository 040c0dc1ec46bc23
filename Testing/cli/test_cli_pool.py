"""`vqseg pool` end to end: every action, exit codes, concurrent adds, and SIGKILL in the middle of an add."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.images import GEOMETRIES, make_image
from helpers.paths import REPO
from VQSegCore.dataset_spec import DatasetSpec
from VQSegCore.io.write import write_image, write_label_map
from VQSegCore.pool import Pool

SIZE = (64, 64, 40)


@pytest.fixture
def inputs(tmp_path) -> dict:
    folder = tmp_path / "inputs"
    folder.mkdir()
    image = make_image(GEOMETRIES["identity"], size=SIZE)
    label = np.zeros(tuple(reversed(SIZE)), np.uint8)
    label[10:20, 20:40, 20:40] = 1
    draft = label.copy()
    draft[10:14] = 0
    bad_values = label * 5
    other_grid = make_image(GEOMETRIES["anisotropic_flipped_z"], size=SIZE)
    return {
        "image": write_image(image, folder / "ct.nii.gz"),
        "label": write_label_map(label, image, folder / "corrected.nii.gz"),
        "draft": write_label_map(draft, image, folder / "draft.nii.gz"),
        "bad_values": write_label_map(bad_values, image, folder / "values.nii.gz"),
        "other_grid": write_label_map(label, other_grid, folder / "grid.nii.gz"),
        "label_array": label,
    }


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def assert_every_case_complete(folder: Path, label_array: np.ndarray) -> int:
    """Each case folder: meta.json parses, every recorded file is present with its hash, the label reads back whole."""
    cases = sorted(p for p in (folder / "cases").iterdir() if not p.name.startswith("."))
    for case in cases:
        meta = json.loads((case / "meta.json").read_text())
        assert meta["case_id"] == case.name
        assert set(meta["sha256"]) == {"image.nii.gz", "label.nii.gz"}
        for name, digest in meta["sha256"].items():
            assert hashlib.sha256((case / name).read_bytes()).hexdigest() == digest, f"{case.name}/{name}"
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(case / "label.nii.gz"))), label_array)
    return len(cases)


def test_add_list_show_update_export_verify_remove(cli, tmp_path, inputs):
    env = {"VQSEG_HOME": str(tmp_path / "home")}
    first = cli("pool", "add", inputs["image"], "--label", inputs["label"], "--draft", inputs["draft"],
                "--draft-model", "lung-lesion/v0002", "--pool", "pilot", "--events", env=env)
    assert first.returncode == 0, first.stderr
    result = first.last
    assert result["event"] == "result" and result["created"] is True and result["action"] == "add"
    assert result["pool"] == str(tmp_path / "home" / "pools" / "pilot")
    assert result["case"]["status"] == "labelled" and result["case"]["draft_model"] == "lung-lesion/v0002"
    assert result["case"]["edited_voxels"] == {"lung_tumour": 4 * 20 * 20}
    assert ("add", 2, 2) in {(e["stage"], e["done"], e["total"]) for e in first.events if e["event"] == "progress"}
    labelled_id = result["case"]["id"]

    second = cli("pool", "add", inputs["image"], "--source-name", "site A, scan 3", "--pool", "pilot", "--events", env=env)
    assert second.returncode == 0, second.stderr
    assert second.last["created"] is False and second.last["case"]["status"] == "unlabelled"
    assert second.last["case"]["source_name"] == "site A, scan 3"
    unlabelled_id = second.last["case"]["id"]

    listed = cli("pool", "list", "--events", env={**env, "VQSEG_POOL": "pilot"}).last  # the pool from $VQSEG_POOL
    assert (listed["count"], listed["labelled"], listed["unlabelled"]) == (2, 1, 1)
    assert [(c["id"], c["status"]) for c in listed["cases"]] == [(labelled_id, "labelled"), (unlabelled_id, "unlabelled")]

    shown = cli("pool", "show", unlabelled_id, "--pool", "pilot", "--events", env=env).last["case"]
    assert shown["case_id"] == unlabelled_id and shown["status"] == "unlabelled" and set(shown["sha256"]) == {"image.nii.gz"}
    assert Path(shown["files"]["image.nii.gz"]).is_file()

    legacy = cli("pool", "export", "--out", tmp_path / "labelled.json", "--labeled-only", "--pool", "pilot", "--events", env=env)
    assert legacy.returncode == 0, legacy.stderr
    assert (legacy.last["cases"], legacy.last["labelled"], legacy.last["unlabelled"]) == (1, 1, 0)  # the old flag still works
    assert any(e["event"] == "log" and "--labeled-only is deprecated" in e["message"] for e in legacy.events)

    updated = cli("pool", "add", "--case", unlabelled_id, "--label", inputs["label"], "--pool", "pilot", "--events", env=env)
    assert updated.returncode == 0, updated.stderr
    assert updated.last["action"] == "update" and updated.last["case"]["status"] == "labelled"

    spec_path = tmp_path / "spec.json"
    exported = cli("pool", "export", "--out", spec_path, "--val-fraction", "0.5", "--pool", "pilot", "--events", env=env)
    assert exported.returncode == 0, exported.stderr
    assert (exported.last["cases"], exported.last["labelled"], exported.last["val"]) == (2, 2, 1)
    spec = DatasetSpec.load(spec_path)
    assert sorted(c.id for c in spec.cases()) == sorted([labelled_id, unlabelled_id]) and len(spec.require_labelled("train")) == 1

    verified = cli("pool", "verify", "--pool", "pilot", env=env)  # human mode: a summary on stdout
    assert verified.returncode == 0, verified.stderr
    assert "intact: True" in verified.stdout and "cases_checked: 2" in verified.stdout

    removed = cli("pool", "remove", labelled_id, "--pool", "pilot", "--events", env=env)
    assert removed.returncode == 0 and removed.last["removed"] == labelled_id
    pool = Pool.open(tmp_path / "home" / "pools" / "pilot")
    assert [c.case_id for c in pool.cases()] == [unlabelled_id]
    assert [line["op"] for line in pool.manifest()] == ["add", "add", "update", "remove"]


BAD_CALLS = {
    "missing image": (("pool", "add", "{tmp}/nope.nii.gz"), "nope.nii.gz: no such file"),
    "label on another grid": (("pool", "add", "{image}", "--label", "{other_grid}"), "is not on the voxel grid"),
    "unknown label values": (("pool", "add", "{image}", "--label", "{bad_values}"), "label values 5 are not in the pool's class table"),
    "unknown case id (show)": (("pool", "show", "case-0042-abcdef"), "no case 'case-0042-abcdef'"),
    "unknown case id (remove)": (("pool", "remove", "case-0042-abcdef"), "no case 'case-0042-abcdef'"),
    "unknown case id (update)": (("pool", "add", "--case", "case-0042-abcdef", "--label", "{label}"), "no case"),
    "update with an image": (("pool", "add", "{image}", "--case", "case-0001-abcdef", "--label", "{label}"), "updates only the label"),
    "add without an image": (("pool", "add", "--label", "{label}"), "needs an IMAGE"),
    "no action": (("pool",), "required"),
}


@pytest.mark.parametrize("problem", list(BAD_CALLS))
def test_bad_input_exits_2_and_writes_nothing(cli, tmp_path, inputs, problem):
    pool = Pool.create(tmp_path / "pool")
    pool.add(inputs["image"])
    before = files_of(pool.folder)
    arguments, message = BAD_CALLS[problem]
    values = {key: str(value) for key, value in inputs.items() if isinstance(value, Path)} | {"tmp": str(tmp_path)}
    run = cli(*[a.format(**values) for a in arguments], "--pool", str(pool.folder), "--events")
    assert run.returncode == 2, run.stderr
    assert run.last["event"] == "error" and message in run.last["message"]
    assert files_of(pool.folder) == before


def test_a_folder_that_is_not_a_pool_and_a_missing_pool_exit_2(cli, tmp_path, inputs):
    (tmp_path / "plain").mkdir()
    for action in (("list",), ("verify",), ("export", "--out", str(tmp_path / "s.json"))):
        run = cli("pool", *action, "--pool", tmp_path / "plain", "--events")
        assert run.returncode == 2 and "not a VQSeg pool" in run.last["message"]
    no_pool = cli("pool", "list", "--events", env={"VQSEG_POOL": ""})
    assert no_pool.returncode == 2 and "no pool given" in no_pool.last["message"]
    # A first add with a bad label must not even create the pool.
    bad_first = cli("pool", "add", inputs["image"], "--label", inputs["bad_values"], "--pool", tmp_path / "new-pool", "--events")
    assert bad_first.returncode == 2 and not (tmp_path / "new-pool").exists()
    assert files_of(tmp_path / "plain") == {} and not (tmp_path / "s.json").exists()


def test_verify_exits_2_with_the_problems_when_the_pool_is_damaged(cli, tmp_path, inputs):
    pool = Pool.create(tmp_path / "pool")
    intact, damaged = (pool.add(inputs["image"], label=inputs["label"]) for _ in range(2))
    damaged.label_path.write_bytes(damaged.label_path.read_bytes()[:-20])  # truncated behind our back
    run = cli("pool", "verify", "--pool", pool.folder, "--events")
    assert run.returncode == 2
    assert f"case {damaged.case_id}: label.nii.gz has changed" in run.last["message"] and intact.case_id not in run.last["message"]
    damaged.image_path.unlink()
    run = cli("pool", "verify", "--repair", "--pool", pool.folder, "--events")
    assert run.returncode == 2 and "image.nii.gz is missing" in run.last["message"]


def test_a_held_lock_makes_add_fail_as_busy(cli, tmp_path, inputs):
    pool = Pool.create(tmp_path / "pool")
    with pool.lock():
        run = cli("pool", "add", inputs["image"], "--lock-timeout", "0.5", "--pool", pool.folder, "--events")
    assert run.returncode == 2 and "busy" in run.last["message"]
    assert pool.cases() == [] and list(pool.layout.cases_dir.iterdir()) == []


def test_two_processes_adding_five_cases_each_at_once(cli, tmp_path, inputs):
    folder = tmp_path / "pool"  # created by whichever first add wins the race
    failures: list[str] = []

    def add_five() -> None:
        for _ in range(5):
            run = cli("pool", "add", inputs["image"], "--label", inputs["label"], "--pool", folder, "--events")
            if run.returncode != 0:
                failures.append(run.stdout + run.stderr)

    workers = [threading.Thread(target=add_five) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert failures == []
    assert assert_every_case_complete(folder, inputs["label_array"]) == 10
    pool = Pool.open(folder)
    assert len({c.case_id for c in pool.cases()}) == 10
    assert [line["op"] for line in pool.manifest()] == ["add"] * 10
    verified = cli("pool", "verify", "--pool", folder, "--events")
    assert verified.returncode == 0 and verified.last["clean"] is True and verified.last["warnings"] == []


def test_sigkill_during_add_leaves_no_case_or_a_complete_one(cli, tmp_path, inputs):
    folder = tmp_path / "pool"
    command = [sys.executable, "-m", "VQSegCore", "pool", "add", str(inputs["image"]), "--label", str(inputs["label"]), "--pool", str(folder)]
    started = time.monotonic()
    assert subprocess.run(command, cwd=REPO, capture_output=True).returncode == 0
    full_add_s = time.monotonic() - started
    rng = random.Random(20250314)
    leftovers_seen = 0

    # Kills at any moment of the command (start-up, reading, building, renaming, logging) …
    for delay in [rng.uniform(0.0, 1.2 * full_add_s) for _ in range(4)]:
        adder = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        adder.send_signal(signal.SIGKILL)
        adder.wait()
    # … and kills aimed at the building phase: while the hidden case folder is being written.
    for delay in [rng.uniform(0.0, 0.03) for _ in range(4)]:
        adder = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while adder.poll() is None and not any(p.name.startswith(".building-") for p in (folder / "cases").iterdir()):
            time.sleep(0.001)
        time.sleep(delay)
        adder.send_signal(signal.SIGKILL)
        adder.wait()
        leftovers_seen += any(p.name.startswith(".building-") for p in (folder / "cases").iterdir())

    assert leftovers_seen >= 1, "no kill landed while a case was being built"
    count = assert_every_case_complete(folder, inputs["label_array"])
    assert count >= 1
    verified = cli("pool", "verify", "--pool", folder, "--events")
    assert verified.returncode == 0, verified.stdout
    assert verified.last["intact"] is True and verified.last["cases_checked"] == count
    assert verified.last["leftovers"] and all(p.startswith("cases/.") for p in verified.last["leftovers"])

    repaired = cli("pool", "verify", "--repair", "--pool", folder, "--events")
    assert repaired.returncode == 0 and repaired.last["repaired"]
    assert not any(p.name.startswith(".") for p in (folder / "cases").iterdir())
    after = cli("pool", "add", inputs["image"], "--label", inputs["label"], "--pool", folder, "--events")
    assert after.returncode == 0 and assert_every_case_complete(folder, inputs["label_array"]) == count + 1
    assert cli("pool", "verify", "--pool", folder, "--events").last["clean"] is True
