"""Fine-tuning on a pool: held-out rule, gate, new version promoted or kept, report files, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from VQSegCore.dataset_spec import Case
from VQSegCore.errors import Cancelled, InputError
from VQSegCore.finetune import decide, finetune, held_out_count, split_for_validation
from VQSegCore.model import VQSegConfig, build_model
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.models import ModelStore
from VQSegCore.pool import Pool
from VQSegCore.synth import PhantomSpec, make_chest_ct

TINY = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, preprocessing=PreprocessingConfig(spacing_mm=(3.0, 3.0)))
FAST = dict(iterations=4, batch_size=2, crop_size=32, validate_every=2, device="cpu")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> list[tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("phantoms")
    written = []
    for seed in range(5):
        phantom = make_chest_ct(PhantomSpec(size_xy=(64, 64), n_slices=16, spacing=(3, 3, 4), seed=seed, tumour_diameter_mm=30))
        image, label = folder / f"p{seed}.nii.gz", folder / f"p{seed}-label.nii.gz"
        sitk.WriteImage(phantom.image, str(image))
        sitk.WriteImage(phantom.label, str(label))
        written.append((image, label))
    return written


def _setup(tmp_path, phantoms, labelled: int):
    store = ModelStore(tmp_path / "models")
    torch.manual_seed(0)
    base = store.add_version("lung", build_model(TINY), status="promoted")
    store.activate("lung", base)
    pool = Pool.create(tmp_path / "pool")
    for index, (image, label) in enumerate(phantoms):
        pool.add(image, label=label if index < labelled else None)
    return store, pool


def test_holdout_rule_is_stable_and_needs_three_labelled_cases():
    assert [held_out_count(n) for n in (0, 2, 3, 5, 6, 9)] == [0, 0, 1, 1, 2, 3]
    cases = [Case(f"c{i}", Path(f"/x/{i}"), "train", Path(f"/y/{i}") if i < 4 else None) for i in range(7)]
    training, held = split_for_validation(cases)
    assert len(held) == 1 and held[0].labelled and held[0] not in training and len(training) == 6
    assert split_for_validation(list(reversed(cases)))[1] == held  # order does not matter
    assert split_for_validation(cases[:2] + cases[4:])[1] == []


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
    splits = {case["id"]: case["split"] for case in json.loads((Path(result["run"]) / "spec.json").read_text())["cases"]}
    assert [case for case, split in splits.items() if split == "val"] == card["training"]["held_out"]  # never trained on

    strict = finetune(pool.folder, model_name="lung", store=store, margin=-1.0, **FAST)  # margin -1: nothing passes
    assert not strict["promoted"] and "more than the margin" in strict["reason"]
    assert store.active("lung") == "v0002" and store.info("lung", strict["version"]).status == "candidate"


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
