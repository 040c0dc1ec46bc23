"""`vqseg demo`: the whole loop runs, every number it prints is recomputable, bad input exits 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from VQSegCore.model import VQSegConfig, build_model
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.model.persistence import save_model
from VQSegCore.models import ModelStore
from VQSegCore.pool import Pool

TINY = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, preprocessing=PreprocessingConfig(spacing_mm=(2.0, 2.0)))


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    save_model(build_model(TINY), tmp_path / "tiny")
    return tmp_path / "tiny"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


@pytest.mark.slow
def test_demo_runs_the_loop_and_reports_what_it_wrote(cli, tmp_path, tiny_model):
    out = tmp_path / "demo"
    run = cli("demo", "--out", out, "--minutes", "0.2", "--unlabelled", "1", "--model-dir", tmp_path / "tiny", "--device", "cpu",
              "--lr", "5e-4", "--events", timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = run.last
    assert result["base_version"] == "v0001" and result["new_version"] == "v0002"
    store = ModelStore(out / "home" / "models")
    assert [v.version for v in store.versions("lung-lesion") if v.status != "shipped"] == ["v0001", "v0002"]
    card = json.loads(store.info("lung-lesion", "v0002").path.joinpath("card.json").read_text())
    assert card["training"]["lr"] == 5e-4  # --lr reached the fine-tune
    assert store.info("lung-lesion", "v0002").status == ("promoted" if result["promoted"] else "candidate")
    cases = Pool.open(out / "home" / "pools" / "demo").cases()
    assert sorted(c.status for c in cases) == ["labelled", "labelled", "labelled", "unlabelled"]
    assert all(c.draft_model == "lung-lesion@v0001" for c in cases if c.status == "labelled")
    # The printed Dice is the Dice of the files it wrote, on the input's geometry.
    for row in result["test_cases"]:
        truth_image = sitk.ReadImage(str(out / "cases" / f"{row['case']}_truth.nii.gz"))
        truth = sitk.GetArrayFromImage(truth_image) > 0
        for stage in ("before", "after"):
            predicted = sitk.ReadImage(str(out / stage / f"{row['case']}.nii.gz"))
            assert predicted.GetSize() == truth_image.GetSize() and predicted.GetOrigin() == truth_image.GetOrigin()
            assert row[f"dice_{stage}"] == pytest.approx(_dice(sitk.GetArrayFromImage(predicted) > 0, truth), abs=1e-4)
    assert (out / "demo.png").stat().st_size > 10_000
    assert "Dice before" in run.stdout  # the table, as a log event


def test_demo_refuses_a_used_folder_and_a_missing_model(cli, tmp_path):
    (tmp_path / "used" / "home").mkdir(parents=True)
    used = cli("demo", "--out", tmp_path / "used", "--events")
    assert used.returncode == 2 and "already holds a demo" in used.last["message"]
    missing = cli("demo", "--out", tmp_path / "fresh", "--model-dir", tmp_path / "nothing", "--events")
    assert missing.returncode == 2 and "no model" in missing.last["message"]
    assert not (tmp_path / "fresh" / "home").exists()
    bad_budget = cli("demo", "--out", tmp_path / "fresh", "--minutes", "0", "--events")
    assert bad_budget.returncode == 2
    bad_lr = cli("demo", "--out", tmp_path / "fresh", "--lr", "2", "--events")
    assert bad_lr.returncode == 2 and "--lr" in bad_lr.last["message"]
