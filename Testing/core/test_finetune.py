"""Fine-tuning on a pool: held-out rule, gate, new version promoted or kept, report files, resume after a stop at any point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from VQSegCore.dataset_spec import Case
from VQSegCore.errors import Cancelled, InputError
from VQSegCore.finetune import decide, finetune, held_out_count, split_for_validation
from VQSegCore.train.settings import FINETUNE
from VQSegCore.models import ModelStore
from helpers.finetune_setup import make_store_and_pool, write_phantoms

FAST = dict(iterations=4, batch_size=2, crop_size=32, validate_every=2, device="cpu")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> list[tuple[Path, Path]]:
    return write_phantoms(tmp_path_factory.mktemp("phantoms"))


def _setup(tmp_path, phantoms, labelled: int):
    return make_store_and_pool(tmp_path, phantoms, labelled)


def test_holdout_rule_is_stable_and_needs_three_labelled_cases():
    assert [held_out_count(n) for n in (0, 2, 3, 5, 6, 9)] == [0, 0, 1, 1, 2, 3]
    cases = [Case(f"c{i}", Path(f"/x/{i}"), "train", Path(f"/y/{i}") if i < 4 else None) for i in range(7)]
    training, held = split_for_validation(cases)
    assert len(held) == 1 and held[0].labelled and held[0] not in training and len(training) == 6
    assert split_for_validation(list(reversed(cases)))[1] == held  # order does not matter
    assert split_for_validation(cases[:2] + cases[4:])[1] == []


def test_pools_filled_in_the_same_order_hold_out_the_same_case_whatever_the_ids_random_suffix():
    def pool_cases(suffixes: list[str]) -> list[Case]:
        return [Case(f"case-{i + 1:04d}-{suffix}", Path(f"/x/{i}"), "train", Path(f"/y/{i}") if i < 6 else None)
                for i, suffix in enumerate(suffixes)]

    first, second = pool_cases([f"{i:06x}" for i in range(9)]), pool_cases([f"{0xabc000 + 3 * i:06x}" for i in range(9)])
    held_first, held_second = split_for_validation(first)[1], split_for_validation(second)[1]
    assert len(held_first) == 2 and [c.id[:9] for c in held_first] == [c.id[:9] for c in held_second]


def test_gate_promotes_within_the_margin_only():
    assert decide({"parent": {"a": 0.80}, "candidate": {"a": 0.795}}, 0.01).promote
    kept = decide({"parent": {"a": 0.80, "b": 0.70}, "candidate": {"a": 0.70, "b": 0.70}}, 0.01)
    assert not kept.promote and "fell from 0.750 to 0.700" in kept.reason
    assert decide({"candidate": {"a": 0.3}}).promote  # the first model of a pool
    assert not decide({"parent": {}, "candidate": {}}).promote


def test_finetune_writes_a_gated_version_with_its_report(tmp_path, phantoms):
    store, pool = _setup(tmp_path, phantoms, labelled=3)
    result = finetune(pool.folder, model_name="lung", store=store, margin=1.0, **FAST)  # margin 1: any candidate passes
    assert result["version"] == "v0002" and result["parent"] == "v0001" and result["promoted"]
    assert store.active("lung") == "v0002"
    info = store.info("lung", "v0002")
    assert info.status == "promoted" and info.parent == "v0001"
    assert set(info.metrics["held_out_cases"]) == set(info.metrics["parent_held_out_cases"]) and len(info.metrics["held_out_cases"]) == 1
    for name in ("report.md", "curves.png", "overlays.png"):
        assert (info.path / name).stat().st_size > 0
    assert "promoted" in (info.path / "report.md").read_text(encoding="utf-8")
    card = json.loads((info.path / "card.json").read_text())
    assert card["training"]["labelled_cases"] == 2 and card["training"]["unlabelled_cases"] == 2
    assert card["training"]["unlabelled_batch_size"] == 1  # half the labelled batch of 2
    assert card["training"]["supervised_warmup"] == FINETUNE.supervised_warmup
    assert card["training"]["step_options"] == {"unlabelled_dice": FINETUNE.unlabelled_dice, "strong_views": FINETUNE.strong_views}
    assert ("semi-supervised (QPM)" in (info.path / "report.md").read_text(encoding="utf-8")
            and "pseudo-label CE, 2 strong views per unlabelled crop" in (info.path / "report.md").read_text(encoding="utf-8"))
    splits = {case["id"]: case["split"] for case in json.loads((Path(result["run"]) / "spec.json").read_text())["cases"]}
    assert [case for case, split in splits.items() if split == "val"] == card["training"]["held_out"]  # never trained on

    strict = finetune(pool.folder, model_name="lung", store=store, margin=-1.0, unlabelled_dice=1.0, strong_views=1, **FAST)  # nothing passes
    assert not strict["promoted"] and "more than the margin" in strict["reason"]
    assert store.active("lung") == "v0002" and store.info("lung", strict["version"]).status == "candidate"
    assert ("pseudo-label CE + Dice, 1 strong view per unlabelled crop"
            in (store.info("lung", strict["version"]).path / "report.md").read_text(encoding="utf-8"))


def test_too_few_labels_keeps_a_candidate(tmp_path, phantoms):
    store, pool = _setup(tmp_path, phantoms, labelled=2)
    result = finetune(pool.folder, model_name="lung", store=store, **FAST)
    assert not result["promoted"] and "fewer than 3" in result["reason"]
    assert store.active("lung") == "v0001"


def test_cancelled_finetune_resumes(tmp_path, phantoms):
    store, pool = _setup(tmp_path, phantoms, labelled=3)

    class CancelAt:
        def __init__(self):
            self.seen = 0

        def check(self):
            if self.seen >= 2:
                raise Cancelled("test")

        def progress(self, stage, done, total, **extra):
            if stage == "train":
                self.seen = done

        def metric(self, **values):
            pass

        def log(self, *args, **kwargs):
            pass

    token = CancelAt()
    with pytest.raises(Cancelled):
        finetune(pool.folder, model_name="lung", store=store, reporter=token, cancel=token, **FAST)
    assert [v.version for v in store.versions("lung")] == ["v0001"]
    result = finetune(pool.folder, model_name="lung", store=store, resume=True, **FAST)
    assert result["iterations"] == 4 and result["version"] == "v0002"
    with pytest.raises(InputError, match="no unfinished"):
        finetune(pool.folder, model_name="lung", store=store, resume=True, **FAST)


def _versions(store: ModelStore) -> list[str]:
    return [v.version for v in store.versions("lung")]


def _activations(store: ModelStore) -> list[str]:
    lines = (store.root / "lung" / "activations.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["active"] for line in lines]


class Killed(BaseException):
    """Stands in for a SIGKILL at a chosen point: nothing after it runs (it is no Exception, so nothing catches it)."""


def _kill_at(monkeypatch, target: str):
    """Make `target` (module.attribute) die when called, and return a function that undoes it."""
    def die(*args, **kwargs):
        raise Killed(target)

    monkeypatch.setattr(target, die)
    return monkeypatch.undo


def test_resume_after_the_version_was_written_adds_no_second_version(tmp_path, phantoms, monkeypatch):
    store, pool = _setup(tmp_path, phantoms, labelled=3)
    revive = _kill_at(monkeypatch, "VQSegCore.models.store.ModelStore.activate")  # after add_version, before activate
    with pytest.raises(Killed):
        finetune(pool.folder, model_name="lung", store=store, margin=1.0, **FAST)
    revive()
    assert _versions(store) == ["v0001", "v0002"] and store.active("lung") == "v0001"

    result = finetune(pool.folder, model_name="lung", store=store, margin=1.0, resume=True, **FAST)
    assert (result["version"], result["parent"], result["promoted"], result["active"]) == ("v0002", "v0001", True, "v0002")
    assert _versions(store) == ["v0001", "v0002"]
    assert _activations(store) == ["v0001", "v0002"]  # the resume activated the version it found, once
    assert "promoted" in (store.path("lung", "v0002") / "report.md").read_text(encoding="utf-8")
    with pytest.raises(InputError, match="no unfinished"):
        finetune(pool.folder, model_name="lung", store=store, resume=True, **FAST)


def test_resume_before_the_plan_or_the_first_checkpoint_starts_over_in_that_run(tmp_path, phantoms, monkeypatch):
    store, pool = _setup(tmp_path, phantoms, labelled=3)
    revive = _kill_at(monkeypatch, "VQSegCore.train.loop.save_checkpoint")  # killed writing the first checkpoint
    with pytest.raises(Killed):
        finetune(pool.folder, model_name="lung", store=store, **FAST)
    revive()
    run = next((store.root / "lung" / ".runs").iterdir())
    assert (run / "train" / "run.json").is_file() and not (run / "train" / "checkpoint").exists()
    result = finetune(pool.folder, model_name="lung", store=store, resume=True, **FAST)
    assert result["iterations"] == 4 and result["run"] == str(run) and _versions(store) == ["v0001", "v0002"]

    killed_after_mkdir = store.root / "lung" / ".runs" / "ft-20990101T000000-1"  # sorts last: the one to resume
    killed_after_mkdir.mkdir()
    revive = _kill_at(monkeypatch, "VQSegCore.finetune.run._train")  # prepared again, then stopped before training
    with pytest.raises(Killed):
        finetune(pool.folder, model_name="lung", store=store, resume=True, **FAST)
    revive()
    plan = json.loads((killed_after_mkdir / "plan.json").read_text())
    assert plan["parent"] == store.active("lung") and (killed_after_mkdir / "spec.json").is_file()


def test_bad_pool_leaves_no_run_to_resume(tmp_path, phantoms):
    store, pool = _setup(tmp_path, phantoms, labelled=0)
    with pytest.raises(InputError, match="no labelled case"):
        finetune(pool.folder, model_name="lung", store=store, **FAST)
    assert not (store.root / "lung" / ".runs").exists() and _versions(store) == ["v0001"]
    with pytest.raises(InputError, match="no unfinished"):
        finetune(pool.folder, model_name="lung", store=store, resume=True, **FAST)


def test_resume_refuses_another_pool(tmp_path, phantoms, monkeypatch):
    store, pool = _setup(tmp_path, phantoms, labelled=3)
    revive = _kill_at(monkeypatch, "VQSegCore.finetune.run._train")
    with pytest.raises(Killed):
        finetune(pool.folder, model_name="lung", store=store, **FAST)
    revive()
    with pytest.raises(InputError, match="is on the pool"):
        finetune(tmp_path / "another-pool", model_name="lung", store=store, resume=True, **FAST)


def _damage(pool) -> tuple[str, str]:
    """One case's label swapped for another valid label, another case's meta.json deleted: (swapped id, broken id)."""
    cases = sorted(p for p in (pool.folder / "cases").iterdir() if not p.name.startswith("."))
    labelled = [c for c in cases if (c / "label.nii.gz").is_file()]
    (labelled[0] / "label.nii.gz").write_bytes((labelled[1] / "label.nii.gz").read_bytes())
    (cases[-1] / "meta.json").unlink()
    return labelled[0].name, cases[-1].name


def test_a_damaged_pool_stops_the_finetune_naming_the_cases(tmp_path, phantoms):
    store, pool = _setup(tmp_path, phantoms, labelled=4)
    swapped, broken = _damage(pool)
    with pytest.raises(InputError, match="2 damaged case") as raised:
        finetune(pool.folder, model_name="lung", store=store, **FAST)
    assert swapped in raised.value.message and broken in raised.value.message and "--skip-damaged" in raised.value.hint
    assert "does not match the hash" in raised.value.message
    assert _versions(store) == ["v0001"] and not (store.root / "lung" / ".runs").exists()


def test_skip_damaged_trains_without_them_and_says_so(tmp_path, phantoms):
    store, pool = _setup(tmp_path, phantoms, labelled=4)
    swapped, broken = _damage(pool)
    result = finetune(pool.folder, model_name="lung", store=store, margin=1.0, skip_damaged=True, **FAST)
    assert sorted(result["skipped_damaged"]) == sorted([swapped, broken])
    card = json.loads((store.info("lung", result["version"]).path / "card.json").read_text())
    assert {item["case"] for item in card["training"]["skipped_damaged"]} == {swapped, broken}
    spec_ids = {case["id"] for case in json.loads((Path(result["run"]) / "spec.json").read_text())["cases"]}
    assert swapped not in spec_ids and broken not in spec_ids and len(spec_ids) == 3
    assert "damaged cases left out | 2" in (store.info("lung", result["version"]).path / "report.md").read_text(encoding="utf-8")


def test_training_reads_a_snapshot_that_pool_remove_cannot_touch(tmp_path, phantoms, monkeypatch):
    """A case removed from the pool while the fine-tune trains: the run's snapshot still holds its files."""
    import VQSegCore.finetune.run as run_module

    store, pool = _setup(tmp_path, phantoms, labelled=3)
    real_train = run_module._train
    seen = {}

    def remove_then_train(plan, spec, **kwargs):
        victim = spec.cases("train")[0]
        pool.remove(victim.id)
        seen["image"] = Path(victim.image)
        return real_train(plan, spec, **kwargs)

    monkeypatch.setattr(run_module, "_train", remove_then_train)
    result = finetune(pool.folder, model_name="lung", store=store, margin=1.0, **FAST)
    assert result["version"] == "v0002"
    assert run_module.SNAPSHOT_DIR in seen["image"].parts


def test_a_new_finetune_clears_finished_and_killed_runs_but_not_live_ones(tmp_path, phantoms):
    import VQSegCore.finetune.run as run_module
    from VQSegCore.file_lock import try_lock

    store, pool = _setup(tmp_path, phantoms, labelled=3)
    runs = store.root / "lung" / ".runs"
    runs.mkdir(parents=True)
    killed = runs / "ft-20200101T000000-1"  # its process died: nothing holds its lock
    finished = runs / "ft-20200101T000001-2"
    live = runs / "ft-20200101T000002-3"  # a fine-tune still going holds its lock (here: this test)
    for folder in (killed, finished, live):
        (folder / "train").mkdir(parents=True)
    (finished / "done.json").write_text("{}")
    held = os.open(live / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        assert try_lock(held)
        result = finetune(pool.folder, model_name="lung", store=store, margin=1.0, **FAST)
        assert sorted(p.name for p in runs.iterdir()) == sorted([live.name, Path(result["run"]).name])
        with pytest.raises(InputError, match="still running in another process"):
            run_module._lock_run(live)  # and it cannot be resumed from under its owner
    finally:
        os.close(held)


def test_a_fine_tuned_version_keeps_its_parents_field_of_view(tmp_path, phantoms):
    """A parent that runs on whole slices (inference_window 0, as the shipped lung model) stays so after fine-tuning."""
    store, pool = _setup(tmp_path, phantoms, labelled=3)
    parent = json.loads((store.path("lung", "v0001") / "card.json").read_text())
    assert parent["config"]["inference_window"] == 0
    result = finetune(pool.folder, model_name="lung", store=store, margin=1.0, **FAST)
    card = json.loads((store.path("lung", result["version"]) / "card.json").read_text())
    assert card["config"]["inference_window"] == 0
