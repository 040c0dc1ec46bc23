"""The training loop: checkpoint round trip, bit-identical resume, validation on the val split only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from VQSegCore.dataset_spec import DatasetSpec
from VQSegCore.errors import Cancelled, InputError
from VQSegCore.model import VQSegConfig, build_model, load_model
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.train import make_teacher
from VQSegCore.train.checkpoint import load_checkpoint, save_checkpoint
from VQSegCore.train.loop import train
from helpers.toydata import make_dataset

TINY = VQSegConfig(backbone="unet", unet_base_width=8, unet_depth=3, codebook_size=64,
                   preprocessing=PreprocessingConfig(spacing_mm=(3.0, 3.0)))
FAST = dict(batch_size=2, crop_size=32, lr=1e-3, seed=0, device="cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


class CancelAfter:
    """A reporter and cancel token in one: cancels once training iteration `n` has been reported."""

    def __init__(self, n: int) -> None:
        self.n, self.requested = n, False

    def check(self) -> None:
        if self.requested:
            raise Cancelled("test cancel")

    def progress(self, stage, done, total, **extra):
        if stage == "train" and done >= self.n:
            self.requested = True

    def metric(self, **values):
        pass

    def log(self, *args, **kwargs):
        pass


class Recorder:
    def __init__(self) -> None:
        self.progress_events, self.metrics = [], []

    def progress(self, stage, done, total, **extra):
        self.progress_events.append((stage, done, total, extra))

    def metric(self, **values):
        self.metrics.append(values)

    def log(self, *args, **kwargs):
        pass


def test_checkpoint_round_trip_restores_weights_optimiser_and_rng(tmp_path):
    torch.manual_seed(0)
    student = build_model(TINY)
    teacher = make_teacher(student)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    student(torch.rand(2, 1, 32, 32)).logits.mean().backward()
    opt.step()
    rng, gen = np.random.default_rng(3), torch.Generator().manual_seed(4)
    rng.random(5)
    torch.rand(3, generator=gen)
    save_checkpoint(tmp_path, student=student, teacher=teacher, optimiser=opt, iteration=7, rng=rng, generator=gen, extra={"best_dice": 0.5})
    expected_np, expected_torch, expected_global = rng.random(4), torch.rand(4, generator=gen), torch.rand(4)

    torch.manual_seed(99)
    student2 = build_model(TINY)
    teacher2 = make_teacher(student2)
    opt2 = torch.optim.AdamW(student2.parameters(), lr=1e-3)
    rng2, gen2 = np.random.default_rng(0), torch.Generator().manual_seed(0)
    torch.rand(10)
    state = load_checkpoint(tmp_path, student=student2, teacher=teacher2, optimiser=opt2, rng=rng2, generator=gen2)
    # checkpoint was taken before the expected draws: the global RNG too
    assert state.iteration == 7 and state.extra["best_dice"] == 0.5
    np.testing.assert_array_equal(rng2.random(4), expected_np)
    assert torch.equal(torch.rand(4, generator=gen2), expected_torch)
    assert torch.equal(torch.rand(4), expected_global)
    for a, b in zip(student.state_dict().values(), student2.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(teacher.state_dict().values(), teacher2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        for key in s1["state"][k]:
            assert torch.equal(s1["state"][k][key], s2["state"][k][key])
    assert not list(tmp_path.glob(".vqseg-tmp-*"))


def test_resume_after_cancel_is_bit_identical(dataset, tmp_path):
    spec = DatasetSpec.load(dataset)
    common = dict(iterations=8, validate_every=3, checkpoint_every=100, **FAST)
    full = train(spec, TINY, tmp_path / "full", **common)
    assert full["iterations"] == 8

    with pytest.raises(Cancelled):
        token = CancelAfter(4)
        train(spec, TINY, tmp_path / "split", cancel=token, reporter=token, **common)
    state = json.loads((tmp_path / "split" / "checkpoint" / "state.json").read_text())
    assert state["iteration"] == 4
    with pytest.raises(InputError, match="already holds"):
        train(spec, TINY, tmp_path / "split", **common)
    resumed = train(spec, TINY, tmp_path / "split", resume=True, **common)
    assert resumed["iterations"] == 8

    a = load_file(str(tmp_path / "full" / "last" / "weights.safetensors"))
    b = load_file(str(tmp_path / "split" / "last" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed["best_val_dice"] == full["best_val_dice"]
    model, card = load_model(tmp_path / "split" / "best")
    assert "val_mean_dice" in card["metrics"]


def test_reports_losses_usage_and_validation_of_val_split_only(tmp_path):
    # the test case's label is broken (values outside the class table) and its image is garbage:
    # training must never read either.
    spec_path = make_dataset(tmp_path / "data", (("a", "train", True), ("b", "train", False), ("v", "val", True)))
    (tmp_path / "data" / "t.nii.gz").write_bytes(b"not an image")
    (tmp_path / "data" / "t-label.nii.gz").write_bytes(b"not a label")
    data = json.loads(spec_path.read_text())
    data["cases"].append({"id": "t", "image": "t.nii.gz", "label": "t-label.nii.gz", "split": "test"})
    spec_path.write_text(json.dumps(data))
    recorder = Recorder()
    summary = train(DatasetSpec.load(spec_path), TINY, tmp_path / "run", iterations=4, validate_every=2,
                    checkpoint_every=2, reporter=recorder, **FAST)
    train_events = [e for e in recorder.progress_events if e[0] == "train"]
    assert [e[1] for e in train_events] == [1, 2, 3, 4]
    extra = train_events[-1][3]
    for key in ("loss", "sup", "unsup", "rec", "vq", "codebook_fraction", "codebook_perplexity", "lr"):
        assert key in extra and np.isfinite(extra[key]), key
    assert 0 < extra["codebook_fraction"] <= 1
    validations = [m for m in recorder.metrics if m.get("stage") == "validate"]
    assert [m["iteration"] for m in validations] == [2, 4]
    assert all(set(m["per_case"]) == {"v"} for m in validations)
    assert summary["cases"] == {"labelled": 1, "unlabelled": 2, "val": 1}
    assert summary["best_val_dice"] == max(m["mean_dice"] for m in validations)
    assert summary["best_iteration"] == max(validations, key=lambda m: m["mean_dice"])["iteration"]
    assert load_model(tmp_path / "run" / "best")[1]["metrics"]["val_mean_dice"] == summary["best_val_dice"]
    # QPM's kernel width: reported while training and recorded in the card (the calibrated default)
    assert extra["qpm_candidates"] == pytest.approx(TINY.qpm_candidates, rel=0.01)
    for folder in ("best", "last"):
        _model, card = load_model(tmp_path / "run" / folder)
        assert card["training"]["qpm_effective_candidates"] == pytest.approx(TINY.qpm_candidates, rel=0.01)


def test_supervised_only_and_minutes_budget(dataset, tmp_path):
    spec = DatasetSpec.load(dataset)
    recorder = Recorder()
    summary = train(spec, TINY, tmp_path / "run", minutes=0.02, supervised_only=True, validate_every=1000,
                    checkpoint_every=1000, reporter=recorder, **FAST)
    steps = [e[3] for e in recorder.progress_events if e[0] == "train"]
    assert summary["iterations"] == len(steps) >= 1
    assert summary["elapsed_s"] >= 0.02 * 60  # the budget was used up, not cut short
    time_left = [step["time_left_s"] for step in steps]  # a time budget counts down in every progress event
    assert time_left == sorted(time_left, reverse=True) and time_left[0] <= 0.02 * 60
    assert all("unsup" not in step for step in steps)
    assert (tmp_path / "run" / "last" / "card.json").is_file()


def test_bf16_autocast_trains_on_cpu_and_fp16_needs_cuda(dataset, tmp_path):
    spec = DatasetSpec.load(dataset)
    with pytest.raises(InputError, match="fp16"):
        train(spec, TINY, tmp_path / "fp16", iterations=2, precision="fp16", **FAST)
    assert not (tmp_path / "fp16").exists()
    with pytest.raises(InputError, match="precision"):
        train(spec, TINY, tmp_path / "fp8", iterations=2, precision="fp8", **FAST)
    summary = train(spec, TINY, tmp_path / "bf16", iterations=3, validate_every=3, precision="bf16", **FAST)
    assert summary["precision"] == "bf16" and summary["iterations"] == 3
    assert load_model(tmp_path / "bf16" / "last")[1]["metrics"]["val_mean_dice"] == summary["last_val_dice"]
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["precision"] == "bf16"
    weights = load_file(str(tmp_path / "bf16" / "last" / "weights.safetensors"))
    assert all(t.dtype != torch.bfloat16 for t in weights.values())  # autocast: the weights stay float32


def test_supervised_warmup_learns_from_labels_only_for_its_share_of_the_budget(dataset, tmp_path):
    spec = DatasetSpec.load(dataset)
    recorder = Recorder()
    train(spec, TINY, tmp_path / "run", iterations=4, supervised_warmup=0.5, validate_every=1000, checkpoint_every=1000,
          reporter=recorder, **FAST)
    steps = [e[3] for e in recorder.progress_events if e[0] == "train"]
    assert ["unsup" in step for step in steps] == [False, False, True, True]  # progress 0, 1/4 | 2/4, 3/4
    assert json.loads((tmp_path / "run" / "run.json").read_text())["supervised_warmup"] == 0.5
    with pytest.raises(InputError, match="warm-up"):
        train(spec, TINY, tmp_path / "bad", iterations=2, supervised_warmup=1.0, **FAST)
    assert not (tmp_path / "bad").exists()


def test_validation_share_holds_back_slow_validations(tmp_path, monkeypatch):
    import time

    import VQSegCore.train.loop as loop

    spec_path = make_dataset(tmp_path / "data", (("a", "train", True), ("v", "val", True)))
    validated = []

    def slow_validate(model, cases, device, cancel=None):
        time.sleep(0.5)  # far longer than a tiny step: at share 0.1 the next one waits ~5 s of training
        validated.append(len(validated))
        return {"mean_dice": 0.5, "per_case": {"v": 0.5}}

    monkeypatch.setattr(loop, "validate", slow_validate)
    spec = DatasetSpec.load(spec_path)
    train(spec, TINY, tmp_path / "every", iterations=6, validate_every=1, checkpoint_every=1000, **FAST)
    assert len(validated) == 7  # iterations 1-6, then the last teacher (the best was iteration 1's)
    validated.clear()
    recorder = Recorder()
    summary = train(spec, TINY, tmp_path / "capped", iterations=6, validate_every=1, validation_share=0.1,
                    checkpoint_every=1000, reporter=recorder, **FAST)
    assert summary["iterations"] == 6
    assert [m["iteration"] for m in recorder.metrics if m.get("stage") == "validate"] == [1, 6]  # the first, then the end
    with pytest.raises(InputError, match="validation share"):
        train(spec, TINY, tmp_path / "bad", iterations=2, validation_share=0.0, **FAST)


def test_resume_reads_the_old_spelling_of_a_step_option_and_still_refuses_a_changed_one(tmp_path):
    from VQSegCore.train.loop import _check_out_folder

    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    settings = {"config": {}, "batch_size": 8, "unlabelled_batch_size": 8, "supervised_warmup": 0.0,
                "step_options": {"unlabelled_dice": 0.5, "strong_views": 2}}
    (tmp_path / "run.json").write_text(json.dumps({**settings, "step_options": {"unlabeled_dice": 0.5, "strong_views": 2}}))
    _check_out_folder(tmp_path, settings, resume=True)  # the same settings, spelt the old way
    with pytest.raises(InputError, match="step_options"):
        _check_out_folder(tmp_path, {**settings, "step_options": {"unlabelled_dice": 1.0, "strong_views": 2}}, resume=True)
