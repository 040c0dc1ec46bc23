"""An output that is an input, or lies in a pool or the model store, exits 2 and changes nothing."""

from __future__ import annotations

import os

import pytest
import torch

from helpers.images import GEOMETRIES, make_image
from helpers.stores import pool_with_one_case, store_with_active_version
from VQSegCore.io.write import write_image
from VQSegCore.model import VQSegConfig, build_model

TINY = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16)


def snapshot(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def ct(tmp_path):
    return write_image(make_image(GEOMETRIES["oblique"], size=(24, 20, 6)), tmp_path / "ct.nii.gz")


@pytest.mark.parametrize("option", ["--output", "--uncertainty", "--probabilities"])
def test_segment_refuses_to_write_over_its_input(cli, tmp_path, ct, option):
    before = ct.read_bytes()
    outputs = ["--output", tmp_path / "label.nii.gz"] if option != "--output" else []
    run = cli("segment", ct, *outputs, option, ct, "--events")
    assert run.returncode == 2, run.stderr
    assert "it is the input" in run.last["message"] and run.last["hint"]
    assert ct.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]


def test_segment_sees_an_input_through_a_hard_link_and_a_symlink(cli, tmp_path, ct):
    before = ct.read_bytes()
    os.link(ct, tmp_path / "hard.nii.gz")
    (tmp_path / "soft.nii.gz").symlink_to(ct)
    for alias in ("hard.nii.gz", "soft.nii.gz"):
        run = cli("segment", ct, "-o", tmp_path / alias, "--events")
        assert run.returncode == 2 and "it is the input" in run.last["message"]
    assert ct.read_bytes() == before


def test_segment_refuses_an_output_inside_a_dicom_series_folder(cli, tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    (series / "slice1.dcm").write_bytes(b"")  # refused before the series is read
    run = cli("segment", series, "-o", series / "seg.nii.gz", "--events")
    assert run.returncode == 2 and "inside the input folder" in run.last["message"]
    assert [p.name for p in series.iterdir()] == ["slice1.dcm"]


def test_two_outputs_of_synth_on_one_file_exit_2(cli, tmp_path):
    run = cli("synth", tmp_path / "a.nii.gz", "--label", tmp_path / "b" / ".." / "a.nii.gz", "--events")
    assert run.returncode == 2 and "same file" in run.last["message"]
    assert list(tmp_path.iterdir()) == []


def test_pool_export_cannot_replace_the_pool_file_nor_write_into_the_pool(cli, tmp_path, ct):
    pool_with_one_case(tmp_path / "pool", tmp_path)
    before = snapshot(tmp_path / "pool")
    for target in (tmp_path / "pool" / "pool.json", tmp_path / "pool" / "cases" / "spec.json", tmp_path / "pool" / "spec.json"):
        run = cli("pool", "export", "--pool", tmp_path / "pool", "--out", target, "--events")
        assert run.returncode == 2, target
        assert "inside the pool" in run.last["message"]
    assert snapshot(tmp_path / "pool") == before
    assert cli("pool", "list", "--pool", tmp_path / "pool", "--events").returncode == 0


def test_models_export_cannot_write_into_the_store(cli, tmp_path):
    env = {"VQSEG_HOME": str(tmp_path / "home")}
    store = store_with_active_version(tmp_path / "home" / "models")
    before = snapshot(store.root)
    targets = [store.root / "lung" / "active", store.root / "lung" / "v0001" / "card.json", store.root / "lung" / "x.tar",
               store.root / "new.tar"]
    for target in targets:
        run = cli("models", "export", "lung@v0001", "--out", target, "--events", env=env)
        assert run.returncode == 2, target
        assert "inside" in run.last["message"] and run.last["hint"]
    assert snapshot(store.root) == before
    assert cli("models", "show", "lung", "--events", env=env).returncode == 0


@pytest.mark.parametrize("command", ["segment", "evaluate", "train"])
def test_outputs_into_a_model_folder_exit_2(cli, tmp_path, ct, command):
    model = tmp_path / "model"
    from VQSegCore.model.persistence import save_model

    torch.manual_seed(0)
    save_model(build_model(TINY), model)
    before = snapshot(model)
    arguments = {
        "segment": ["segment", ct, "--model-dir", model, "-o", model / "card.json.nii.gz"],
        "evaluate": ["evaluate", "--prediction", ct, "--label", ct, "--out", model],
        "train": ["train", "--dataset", tmp_path / "spec.json", "--out", model, "--iterations", "1"],
    }[command]
    if command == "train":
        (tmp_path / "spec.json").write_text('{"name": "x", "cases": [{"id": "a", "image": "%s", "label": "%s", "split": "train"}]}' % (ct, ct))
    run = cli(*arguments, "--events")
    assert run.returncode == 2, run.stderr
    assert "model folder" in run.last["message"] or "inside the input folder" in run.last["message"]
    assert snapshot(model) == before
