"""`vqseg finetune` and `vqseg models` as child processes: bad input exits 2; the store round-trips."""

from __future__ import annotations

import torch

from helpers.stores import store_with_active_version
from VQSegCore.model import VQSegConfig, build_model
from VQSegCore.models import ModelStore

TINY = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16)


def test_finetune_bad_input_exits_2(cli, tmp_path):
    env = {"VQSEG_HOME": str(tmp_path / "home")}
    no_budget = cli("finetune", "--pool", tmp_path / "pool", "--events", env=env)
    assert no_budget.returncode == 2 and "--minutes" in no_budget.last["message"]
    no_pool = cli("finetune", "--pool", tmp_path / "nowhere", "--iterations", "2", "--events", env=env)
    assert no_pool.returncode == 2
    bad_margin = cli("finetune", "--pool", tmp_path / "pool", "--iterations", "2", "--margin", "2", "--events", env=env)
    assert bad_margin.returncode == 2 and "margin" in bad_margin.last["message"]
    bad_lr = cli("finetune", "--pool", tmp_path / "pool", "--iterations", "2", "--lr", "0", "--events", env=env)
    assert bad_lr.returncode == 2 and "--lr" in bad_lr.last["message"]
    bad_warmup = cli("finetune", "--pool", tmp_path / "pool", "--iterations", "2", "--supervised-warmup", "1", "--events", env=env)
    assert bad_warmup.returncode == 2 and "--supervised-warmup" in bad_warmup.last["message"]
    bad_batch = cli("finetune", "--pool", tmp_path / "pool", "--iterations", "2", "--unlabelled-batch-size", "0", "--events", env=env)
    assert bad_batch.returncode == 2 and "batch sizes" in bad_batch.last["message"]
    bad_dice = cli("finetune", "--pool", tmp_path / "pool", "--iterations", "2", "--unlabelled-dice", "-1", "--events", env=env)
    assert bad_dice.returncode == 2 and "--unlabelled-dice" in bad_dice.last["message"]
    assert cli("finetune", "--pool", tmp_path / "pool", "--iterations", "2", "--strong-views", "3", env=env).returncode == 2
    assert not (tmp_path / "home" / "models").exists()


def test_models_list_activate_rollback_export_import(cli, tmp_path):
    env = {"VQSEG_HOME": str(tmp_path / "home")}
    store = ModelStore(tmp_path / "home" / "models")
    for seed in range(2):
        torch.manual_seed(seed)
        store.add_version("lung", build_model(TINY))
    assert cli("models", "activate", "lung@v0001", "--events", env=env).returncode == 0
    assert cli("models", "activate", "lung@v0002", "--events", env=env).returncode == 0
    listed = cli("models", "list", "--events", env=env).last
    assert [v["version"] for v in listed["models"]["lung"] if v["active"]] == ["v0002"]
    rolled = cli("models", "rollback", "lung", "--events", env=env)
    assert rolled.returncode == 0 and rolled.last["active"] == "v0001"
    shown = cli("models", "show", "lung", "--events", env=env).last
    assert shown["version"] == "v0001" and "weights_sha256" in shown["card"]
    exported = cli("models", "export", "lung@v0002", "--out", tmp_path / "v2.tar", "--events", env=env)
    assert exported.returncode == 0 and (tmp_path / "v2.tar").is_file()
    imported = cli("models", "import", tmp_path / "v2.tar", "--name", "lung", "--events", env=env)
    assert imported.returncode == 0 and imported.last["version"] == "v0003"
    assert cli("models", "activate", "lung", "--events", env=env).returncode == 2  # no version given
    assert cli("models", "activate", "lung@v0042", "--events", env=env).returncode == 2
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    assert cli("models", "import", tmp_path / "junk.tar", "--name", "lung", "--events", env=env).returncode == 2


def test_finetune_help_states_the_library_defaults():
    """The CLI leaves lr and warm-up unset so finetune()'s defaults apply; its help must name those values."""
    import argparse
    import re

    from VQSegCore.cli.commands import finetune as command
    from VQSegCore.train.settings import FINETUNE

    parser = command.register(argparse.ArgumentParser().add_subparsers())
    options = {action.dest: action.help for action in parser._actions}
    named = ("lr", "supervised_warmup", "unlabelled_dice", "strong_views")
    stated = {dest: float(re.search(r"default ([0-9.e-]+)", options[dest]).group(1)) for dest in named}
    assert stated == {"lr": FINETUNE.lr, "supervised_warmup": FINETUNE.supervised_warmup, "unlabelled_dice": FINETUNE.unlabelled_dice,
                      "strong_views": FINETUNE.strong_views}
    assert "half of --batch-size" in options["unlabelled_batch_size"]


def test_a_damaged_active_pointer_is_a_clear_error_that_activate_repairs(cli, tmp_path):
    env = {"VQSEG_HOME": str(tmp_path / "home")}
    store = store_with_active_version(tmp_path / "home" / "models")
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    for junk in (b"\x1f\x8b\x08\x00\xff\xfe binary", b"../../etc/passwd\n"):
        (store.root / "lung" / "active").write_bytes(junk)
        run = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "o.nii.gz", "--model", "lung", "--events", env=env)
        assert run.returncode == 2 and "pointer" in run.last["message"] and "models activate" in run.last["hint"], run.stderr[-1500:]
        assert "Traceback" not in run.stderr
        listed = cli("models", "list", "lung", "--events", env=env)
        assert listed.returncode == 0 and [v["active"] for v in listed.last["models"]["lung"]] == [False]
    assert cli("models", "activate", "lung@v0001", "--events", env=env).returncode == 0
    assert store.active("lung") == "v0001"


def test_finetune_of_an_unknown_model_name_exits_2_unless_from_scratch(cli, tmp_path):
    from helpers.finetune_setup import FAST_ARGS, make_store_and_pool, write_phantoms

    home = tmp_path / "home"
    store, pool = make_store_and_pool(tmp_path, write_phantoms(tmp_path / "phantoms", count=3), labelled=3, store_root=home / "models")
    env = {"VQSEG_HOME": str(home)}
    typo = cli("finetune", "--pool", pool.folder, "--model", "lugn", *FAST_ARGS, "--events", env=env)
    assert typo.returncode == 2 and "no model 'lugn'" in typo.last["message"] and "--from-scratch" in typo.last["hint"]
    assert "lung" in typo.last["message"]  # the known names
    assert not (home / "models" / "lugn").exists()
    new = cli("finetune", "--pool", pool.folder, "--model", "fresh", "--from-scratch", *FAST_ARGS, "--events", env=env)
    assert new.returncode == 0, new.stderr[-2000:]
    assert new.last["parent"] is None and store.versions("fresh")[0].version == "v0001"


def test_models_list_is_one_summary_per_version_and_show_has_the_details(cli, tmp_path):
    env = {"VQSEG_HOME": str(tmp_path / "home")}
    store = ModelStore(tmp_path / "home" / "models")
    torch.manual_seed(0)
    per_case = {f"case-{i:04d}": 0.5 for i in range(300)}
    store.add_version("lung", build_model(TINY), metrics={"held_out_dice": 0.71, "held_out_cases": per_case})
    (version,) = cli("models", "list", "lung", "--events", env=env).last["models"]["lung"]
    assert version["metrics"] == {"held_out_dice": 0.71} and len(str(version)) < 400
    shown = cli("models", "show", "lung@v0001", "--events", env=env).last
    assert len(shown["metrics"]["held_out_cases"]) == 300
