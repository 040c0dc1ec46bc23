"""`vqseg finetune` under torchrun: 2 gloo CPU ranks train, rank 0 alone writes; a bad pool ends both ranks with exit 2;
a torchrun job killed with SIGKILL during training resumes under torchrun and writes one version."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.finetune_setup import FAST_ARGS, MODEL, at_progress, kill_on_event, make_store_and_pool, write_phantoms
from VQSegCore.errors import Cancelled, InputError
from VQSegCore.models import ModelStore
from VQSegCore.pool import Pool
from VQSegCore.train.distributed import Distributed

REPO = Path(__file__).resolve().parents[2]
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")


def _environment(home: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "VQSEG_HOME": str(home)}
    for name in TORCHRUN_VARIABLES:
        env.pop(name, None)
    return env


def _torchrun(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "VQSegCore",
                           *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=_environment(home))


def _torchrun_killed_at_iteration(home: Path, iteration: int, *args: str, timeout: float = 240) -> list[dict]:
    """Start torchrun in its own process group, read rank 0's events until the train progress of `iteration`,
    then SIGKILL the whole group (torchrun and both ranks) as a lost machine would; the events read."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "VQSegCore", *args]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=_environment(home),
                           start_new_session=True)
    return kill_on_event(job, at_progress("train", iteration), lambda: os.killpg(job.pid, signal.SIGKILL), timeout)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _two_ranks(home: Path, *args: str, timeout: float) -> list[subprocess.CompletedProcess]:
    """Both ranks of `python -m VQSegCore ARGS`, started with the variables torchrun sets, so each exit code can be read."""
    port, ranks = _free_port(), []
    try:
        for rank in range(2):
            env = _environment(home) | {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            ranks.append(subprocess.Popen([sys.executable, "-m", "VQSegCore", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, cwd=REPO, env=env))
        outputs = [process.communicate(timeout=timeout) for process in ranks]  # a hang fails here, not forever
        return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(ranks, outputs)]
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
                process.wait()


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> list[tuple[Path, Path]]:
    return write_phantoms(tmp_path_factory.mktemp("phantoms"))


@pytest.mark.slow
def test_two_ranks_write_one_version_whose_weights_are_rank_0s(tmp_path, phantoms):
    home = tmp_path / "home"
    store, pool = make_store_and_pool(tmp_path, phantoms, labelled=3, store_root=home / "models")
    done = _torchrun(home, "finetune", "--pool", str(pool.folder), "--model", MODEL, *FAST_ARGS, "--margin", "0.99", "--events")
    assert done.returncode == 0, done.stderr[-3000:]  # torchrun exits 0 only when every rank did

    results = [e for e in _events(done.stdout) if e["event"] == "result"]
    assert len(results) == 1, "only rank 0 reports"
    assert (results[0]["version"], results[0]["parent"], results[0]["promoted"]) == ("v0002", "v0001", True)
    assert [v.version for v in store.versions(MODEL)] == ["v0001", "v0002"] and store.active(MODEL) == "v0002"
    assert len(list(store.root.rglob("report.md"))) == 1
    runs = list((store.root / MODEL / ".runs").iterdir())
    assert len(runs) == 1 and json.loads((runs[0] / "done.json").read_text()) == {"version": "v0002", "promoted": True}

    card = json.loads((store.path(MODEL, "v0002") / "card.json").read_text())
    assert card["training"]["world_size"] == 2 and card["training"]["iterations_done"] == 4
    saved_by_rank_0 = load_file(str(runs[0] / "train" / "last" / "weights.safetensors"))
    candidate = load_file(str(store.path(MODEL, "v0002") / "weights.safetensors"))
    assert candidate.keys() == saved_by_rank_0.keys()
    for name in candidate:
        assert torch.equal(candidate[name], saved_by_rank_0[name]), name
    assert "teachers differ" not in done.stderr + done.stdout  # the ranks ended with the same weights


@pytest.mark.slow
def test_a_killed_torchrun_fine_tune_resumes_under_torchrun_and_writes_one_version(tmp_path, phantoms):
    home = tmp_path / "home"
    store, pool = make_store_and_pool(tmp_path, phantoms, labelled=3, store_root=home / "models")
    args = ("finetune", "--pool", str(pool.folder), "--model", MODEL, *FAST_ARGS, "--margin", "0.99", "--events")
    seen = _torchrun_killed_at_iteration(home, 3, *args)
    assert any(e["event"] == "progress" and e["stage"] == "train" and e["done"] == 3 for e in seen), seen[-3:]
    assert [v.version for v in store.versions(MODEL)] == ["v0001"] and store.active(MODEL) == "v0001"
    (run,) = (store.root / MODEL / ".runs").iterdir()
    assert json.loads((run / "train" / "checkpoint" / "state.json").read_text())["iteration"] == 2
    assert not (run / "done.json").exists()

    done = _torchrun(home, *args, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    events = _events(done.stdout)
    assert any(e["event"] == "log" and "resumed at iteration 2" in e["message"] for e in events)
    (result,) = [e for e in events if e["event"] == "result"]
    assert (result["version"], result["parent"], result["run"]) == ("v0002", "v0001", str(run))
    assert [v.version for v in store.versions(MODEL)] == ["v0001", "v0002"] and store.active(MODEL) == "v0002"
    assert json.loads((run / "done.json").read_text()) == {"version": "v0002", "promoted": True}
    card = json.loads((store.path(MODEL, "v0002") / "card.json").read_text())
    assert card["training"]["world_size"] == 2 and card["training"]["iterations_done"] == 4
    assert pool.verify().intact


def test_a_bad_pool_ends_both_ranks_with_exit_2_and_the_same_message(tmp_path):
    home = tmp_path / "home"
    store = ModelStore(home / "models")
    empty = Pool.create(tmp_path / "empty-pool")
    # --from-scratch: the store is empty, and the pool is the bad input under test
    ranks = _two_ranks(home, "finetune", "--pool", str(empty.folder), "--model", MODEL, "--from-scratch", *FAST_ARGS, "--events",
                       timeout=90)
    assert [rank.returncode for rank in ranks] == [2, 2], [rank.stderr[-2000:] for rank in ranks]
    error = _events(ranks[0].stdout)[-1]
    assert error["event"] == "error" and "has no cases" in error["message"] and error["exit_code"] == 2
    assert f"[rank 1] error: {error['message']}" in ranks[1].stderr
    assert ranks[1].stdout == ""  # rank 0 alone speaks for the job
    assert not (store.root / MODEL / ".runs").exists()


def _rank(rank: int, sent=None) -> Distributed:
    """Rank `rank` of a 2-rank job whose broadcast hands over `sent` (what rank 0 shared), without a process group."""

    class Rank(Distributed):
        def broadcast_object(self, value):
            return value if self.is_main else sent

    return Rank(rank=rank, local_rank=rank, world_size=2)


@pytest.mark.parametrize("shared, raised, message", [
    (("error", "input", "the pool is empty", "add cases"), InputError, "the pool is empty"),
    (("error", "cancelled", "cancelled", ""), Cancelled, "cancelled"),
    (("error", "bug", "KeyError: 'x'", ""), RuntimeError, "rank 0 failed: KeyError"),
])
def test_other_ranks_raise_what_rank_0_raised_without_doing_its_work(shared, raised, message):
    rank_1 = _rank(1, sent=shared)
    with pytest.raises(raised, match=message) as caught:
        rank_1.on_main(lambda: pytest.fail("rank 1 did rank 0's work"))
    if raised is InputError:
        assert caught.value.hint == "add cases"  # same exit code, same message and hint on every rank


def test_rank_0_does_the_work_and_keeps_its_own_error():
    rank_0 = _rank(0)
    assert rank_0.on_main(lambda: {"run": "ft-1"}) == {"run": "ft-1"}
    problem = InputError("no labelled case", "label some")

    def refuse():
        raise problem

    with pytest.raises(InputError) as caught:
        rank_0.on_main(refuse)
    assert caught.value is problem
