"""The model store: numbered versions, atomic activation, rollback, archives without pickle, locate_model."""

from __future__ import annotations

import json
import multiprocessing
import os
import tarfile

import pytest
import torch

from VQSegCore.errors import InputError
from VQSegCore.model import VQSegConfig, build_model, load_model
from VQSegCore.models import ModelStore, locate_model

TINY = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("VQSEG_HOME", str(tmp_path / "home"))
    return ModelStore()


def _model(seed: int):
    torch.manual_seed(seed)
    return build_model(TINY)


def test_versions_activation_and_rollback(store):
    v1 = store.add_version("lung", _model(1), metrics={"dice": 0.5}, status="promoted")
    v2 = store.add_version("lung", _model(2), parent=v1, status="candidate", reason="held-out Dice fell")
    assert (v1, v2) == ("v0001", "v0002")
    assert store.active("lung") is None
    store.activate("lung", v1)
    store.activate("lung", v2)
    assert store.active("lung") == v2 and locate_model("lung") == store.root / "lung" / v2
    infos = {info.version: info for info in store.versions("lung")}
    assert infos[v2].active and infos[v2].parent == v1 and infos[v2].reason == "held-out Dice fell"
    assert infos[v1].metrics == {"dice": 0.5} and infos[v1].status == "promoted"
    assert store.rollback("lung") == v1 and store.active("lung") == v1
    v3 = store.add_version("lung", _model(5))
    store.activate("lung", v3)
    store.activate("lung", v2)
    assert store.rollback("lung") == v3 and store.rollback("lung") == v1  # further back, never forward again
    assert locate_model("lung@v0002") == store.root / "lung" / v2
    log = [json.loads(line) for line in (store.root / "lung" / "activations.jsonl").read_text().splitlines()]
    assert [entry["active"] for entry in log] == [v1, v2, v1, v3, v2, v3, v1]
    with pytest.raises(InputError, match="no earlier active version"):
        ModelStore(store.root).rollback("other")
    with pytest.raises(InputError, match="no version"):
        store.activate("lung", "v0009")


def test_export_import_round_trip_and_refusals(store, tmp_path):
    v1 = store.add_version("lung", _model(3))
    archive = store.export_version("lung", v1, tmp_path / "v1.vqseg.tar")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["card.json", "store.json", "weights.safetensors"]
    imported = store.import_version(archive, "lung-copy")
    a, _ = load_model(store.path("lung", v1))
    b, _ = load_model(store.path("lung-copy", imported))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        tar.add(store.path("lung", v1) / "card.json", arcname="card.json")
        tar.add(store.path("lung", v1) / "weights.safetensors", arcname="weights.safetensors")
        (tmp_path / "model.pt").write_bytes(b"pickle")
        tar.add(tmp_path / "model.pt", arcname="model.pt")
    with pytest.raises(InputError, match="unexpected member"):
        store.import_version(evil, "lung")
    tampered = tmp_path / "tampered.tar"
    weights = bytearray((store.path("lung", v1) / "weights.safetensors").read_bytes())
    weights[-1] ^= 1
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "weights.safetensors").write_bytes(bytes(weights))
    with tarfile.open(tampered, "w") as tar:
        tar.add(store.path("lung", v1) / "card.json", arcname="card.json")
        tar.add(tmp_path / "w" / "weights.safetensors", arcname="weights.safetensors")
    with pytest.raises(InputError, match="do not match"):
        store.import_version(tampered, "lung")
    assert [info.version for info in store.versions("lung")] == [v1]


def test_a_killed_writer_leaves_no_version(store):
    folder = store.root / "lung"
    folder.mkdir(parents=True)
    dead = folder / ".building-v0001-999999999"
    dead.mkdir()
    (dead / "weights.safetensors").write_bytes(b"half")
    (dead / "card.json").write_text("{}")
    assert store.add_version("lung", _model(4)) == "v0001"
    assert not dead.exists()


def test_import_makes_its_files_durable_before_the_version_appears(store, tmp_path, monkeypatch):
    archive = store.export_version("lung", store.add_version("lung", _model(5)), tmp_path / "v1.tar")
    happened = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        happened.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(source, target):
        happened.append(("rename", os.fspath(target)))
        return real_rename(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    version = store.import_version(archive, "lung")
    published = happened.index(("rename", str(store.root / "lung" / version)))
    synced = [path for kind, path in happened[:published] if kind == "fsync" and ".building-" in path]
    for name in ("weights.safetensors", "card.json", "store.json"):
        assert any(path.endswith(name) for path in synced), f"{name} not fsync-ed before the rename: {happened}"


def test_incomplete_version_folders_are_never_listed(store):
    v1 = store.add_version("lung", _model(6))
    folder = store.root / "lung"
    (folder / "v0002").mkdir()
    (folder / "v0002" / "card.json").write_bytes((folder / v1 / "card.json").read_bytes())  # card without weights
    (folder / "v0003").mkdir()  # nothing at all
    assert [info.version for info in store.versions("lung")] == [v1]
    with pytest.raises(InputError, match="no version 'v0002'"):
        store.path("lung", "v0002")
    assert store.add_version("lung", _model(7)) == "v0004"  # a number is never reused


def test_a_failed_write_removes_its_building_folder(store, monkeypatch):
    store.add_version("lung", _model(8))

    def full_disk(model, folder, **card):  # half the weights written, then the disk is full
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.safetensors").write_bytes(b"half")
        raise InputError("cannot write: the disk is full")

    monkeypatch.setattr("VQSegCore.models.store.save_model", full_disk)
    with pytest.raises(InputError, match="disk is full"):
        store.add_version("lung", _model(9))
    assert not list((store.root / "lung").glob(".building-*"))
    assert [info.version for info in store.versions("lung")] == ["v0001"]


def test_a_torn_activation_log_line_is_skipped(store):
    v1, v2 = store.add_version("lung", _model(10)), store.add_version("lung", _model(11))
    store.activate("lung", v1)
    store.activate("lung", v2)
    with open(store.root / "lung" / "activations.jsonl", "a", encoding="utf-8") as log:
        log.write('{"time": "2026-01-01T00:00:00+00:00", "act')  # a writer killed mid-line
    assert store.was_activated("lung", v1) and store.was_activated("lung", v2)
    assert not store.was_activated("lung", "v0003")
    assert store.rollback("lung") == v1


def _add_versions(root: str, seed: int, count: int, queue) -> None:
    store = ModelStore(root)
    queue.put([store.add_version("lung", _model(seed + i)) for i in range(count)])


def test_concurrent_writers_get_distinct_versions(store):
    store.root.mkdir(parents=True)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_add_versions, args=(str(store.root), 10 * n, 3, queue)) for n in range(2)]
    for worker in workers:
        worker.start()
    versions = queue.get(timeout=120) + queue.get(timeout=120)
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(versions) == [f"v{i:04d}" for i in range(1, 7)]
    assert len(store.versions("lung")) == 6


def test_locate_model_errors_name_what_was_searched(store, tmp_path):
    with pytest.raises(InputError, match="no model named 'nothing'"):
        locate_model("nothing")
    with pytest.raises(InputError, match="bad model name"):
        locate_model("../etc")
    with pytest.raises(InputError, match="card.json"):
        locate_model(None, tmp_path)
    os.makedirs(store.root / "lung")
    (store.root / "lung" / "active").write_text("v0003\n")
    with pytest.raises(InputError, match="missing"):
        locate_model("lung")
