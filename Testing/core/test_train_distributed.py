"""Data-parallel training under torchrun: 2 CPU processes with gloo end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from VQSegCore.train.data import SliceSampler, _shard
from VQSegCore.train.distributed import Distributed
from VQSegCore.errors import InputError
from helpers.toydata import make_dataset

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "Testing" / "ddp_worker.py"
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), (("a", "train", True), ("b", "train", True), ("u", "train", False),
                                                          ("v", "val", True)))


def test_two_gloo_ranks_hold_identical_weights_and_drift_apart_without_averaging(dataset, tmp_path):
    synced, unsynced = tmp_path / "synced", tmp_path / "unsynced"
    for out, extra in ((synced, []), (unsynced, ["--no-sync"])):
        out.mkdir()
        done = torchrun(str(WORKER), str(dataset), str(out), *extra)
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = load_file(str(synced / "rank0.safetensors")), load_file(str(synced / "rank1.safetensors"))
    assert a.keys() == b.keys()
    for name in a:  # parameters, BatchNorm statistics and the teacher: bit-identical
        assert torch.equal(a[name], b[name]), name
    a, b = load_file(str(unsynced / "rank0.safetensors")), load_file(str(unsynced / "rank1.safetensors"))
    # same start (broadcast), different shards: without averaging the ranks disagree
    assert torch.equal(a["student.quantizer.frozen_codebook"], b["student.quantizer.frozen_codebook"])
    assert any(not torch.equal(a[name], b[name]) for name in a if name.startswith("student.") and a[name].is_floating_point())


def test_vqseg_train_under_torchrun_writes_once_and_reports_from_rank_0(dataset, tmp_path):
    out = tmp_path / "run"
    done = torchrun("-m", "VQSegCore", "train", "--dataset", str(dataset), "--out", str(out), "--iterations", "4",
                    "--batch-size", "2", "--crop-size", "32", "--base-width", "8", "--depth", "3", "--codebook-size", "64",
                    "--spacing", "3", "3", "--validate-every", "2", "--device", "cpu", "--events")
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 1, "only rank 0 reports"
    result = results[0]
    assert result["world_size"] == 2 and result["rank"] == 0 and result["iterations"] == 4
    assert len([e for e in events if e["event"] == "metric" and e.get("stage") == "validate"]) == 2
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2
    assert (out / "last" / "weights.safetensors").is_file() and (out / "best" / "card.json").is_file()
    assert not list(out.rglob(".vqseg-tmp-*"))


def test_shards_split_the_slices_without_overlap():
    slices = [(0, k) for k in range(7)] + [(1, k) for k in range(4)]
    parts = [_shard(slices, rank, 3) for rank in range(3)]
    assert sorted(s for part in parts for s in part) == sorted(slices)
    assert not set(parts[0]) & set(parts[1])
    assert _shard(slices[:1], 2, 3) == slices[:1]  # too few slices for this rank: it uses them all


def test_environment_is_read_and_checked():
    assert Distributed.from_environment({}) == Distributed(0, 0, 1)
    ranks = Distributed.from_environment({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (ranks.rank, ranks.local_rank, ranks.world_size, ranks.enabled, ranks.is_main) == (3, 1, 4, True, False)
    with pytest.raises(InputError, match="torchrun"):
        Distributed.from_environment({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(InputError):
        Distributed.from_environment({"RANK": "x", "WORLD_SIZE": "2"})


def test_sampler_rejects_a_bad_shard(dataset):
    with pytest.raises(ValueError, match="shard"):
        SliceSampler([object()], [], crop_size=32, size_multiple=8, rng=None, shard=(2, 2))


def test_time_budget_and_a_refused_folder_end_every_rank_together(dataset, tmp_path):
    common = ["-m", "VQSegCore", "train", "--dataset", str(dataset), "--batch-size", "2", "--crop-size", "32", "--base-width", "8",
              "--depth", "3", "--codebook-size", "64", "--spacing", "3", "3", "--device", "cpu", "--events"]
    timed = torchrun(*common, "--out", str(tmp_path / "timed"), "--minutes", "0.1", "--validate-every", "1000")
    assert timed.returncode == 0, timed.stderr[-3000:]
    result = [json.loads(line) for line in timed.stdout.splitlines() if line.startswith("{")][-1]
    assert result["world_size"] == 2 and result["iterations"] >= 1  # both ranks stopped at the same iteration
    refused = torchrun(*common, "--out", str(tmp_path / "nothing"), "--iterations", "2", "--resume", timeout=120)
    assert refused.returncode != 0
    assert refused.stderr.count("holds no training checkpoint") + refused.stdout.count("holds no training checkpoint") >= 1


def test_a_joined_process_group_is_left_after_a_barrier_only_when_the_run_ended_cleanly(monkeypatch):
    """A clean end meets in a barrier before the group is destroyed (no rank tears down under another's last
    broadcast); an error destroys it at once (a rank that failed alone must not wait in a barrier)."""
    calls, joined = [], [False]
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: joined[0])
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: (calls.append("init"), joined.__setitem__(0, True)))
    monkeypatch.setattr(torch.distributed, "barrier", lambda *a, **k: calls.append("barrier"))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda *a, **k: (calls.append("destroy"), joined.__setitem__(0, False)))
    ranks = Distributed(rank=1, local_rank=1, world_size=2)

    with ranks.joined("cpu") as device:
        assert device == torch.device("cpu") and calls == ["init"]
    assert calls == ["init", "barrier", "destroy"]

    calls.clear()
    with pytest.raises(InputError):
        with ranks.joined("cpu"):
            raise InputError("bad pool")
    assert calls == ["init", "destroy"]

    calls.clear()
    joined[0] = True  # joined by the caller (e.g. train() inside finetune()): the caller leaves it
    with ranks.joined("cpu"):
        pass
    assert calls == []
