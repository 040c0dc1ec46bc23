"""`vqseg evaluate` end to end: one pair, a dataset spec, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.images import GEOMETRIES

GEOMETRY = GEOMETRIES["oblique"]  # spacing (0.7, 0.9, 1.25) mm, tilted
SHAPE = (6, 16, 16)  # [z, y, x]


def label_image(array: np.ndarray, geometry: dict = GEOMETRY) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(tuple(np.asarray(geometry["direction"], dtype=float).ravel()))
    return image


def plate(shift_x: int = 0, value: int = 1) -> np.ndarray:
    """A one-slice 10 × 10 plate; moved one voxel along x it scores Dice 0.9, HD95 0.7 mm, ASD 0.07 mm."""
    array = np.zeros(SHAPE, np.uint8)
    array[2, 3:13, 3 + shift_x:13 + shift_x] = value
    return array


def write(path, array: np.ndarray, geometry: dict = GEOMETRY):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(label_image(array, geometry), str(path))
    return path


@pytest.fixture
def pair(tmp_path):
    return write(tmp_path / "pred.nii.gz", plate(shift_x=1)), write(tmp_path / "truth.nrrd", plate())


@pytest.fixture
def dataset(tmp_path):
    """Test split: a good case, a missed tumour, an empty pair and an unlabelled case; one train case."""
    data = tmp_path / "data"
    empty = np.zeros(SHAPE, np.uint8)
    cases = [("miss", plate(), "test"), ("none", empty, "test"), ("good", plate(), "test"), ("unl", None, "test"), ("tr", plate(), "train")]
    entries = []
    for case_id, label, split in cases:
        write(data / "images" / f"{case_id}.nii.gz", empty)
        entry = {"id": case_id, "image": f"images/{case_id}.nii.gz", "split": split}
        if label is not None:
            write(data / "labels" / f"{case_id}.nii.gz", label)
            entry["label"] = f"labels/{case_id}.nii.gz"
        entries.append(entry)
    (data / "spec.json").write_text(json.dumps({"name": "pilot", "cases": entries}))
    predictions = tmp_path / "predictions"
    write(predictions / "good.nrrd", plate(shift_x=1))
    write(predictions / "miss.mha", empty)
    write(predictions / "none.nii.gz", empty)
    return data / "spec.json", predictions


def refuse(constant: str):
    raise ValueError(f"metrics.json holds {constant}; strict JSON readers reject it")


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_one_pair_writes_json_and_markdown_with_the_right_numbers(cli, tmp_path, pair):
    prediction, label = pair
    run = cli("evaluate", "--prediction", prediction, "--label", label, "--out", tmp_path / "report", "--events")
    assert run.returncode == 0, run.stderr
    (metric,) = [e for e in run.events if e["event"] == "metric"]
    assert metric["case"] == "pred" and metric["class"] == "lung_tumour" and metric["status"] == "ok"
    assert metric["dice"] == pytest.approx(0.9) and metric["hd95_mm"] == pytest.approx(0.7) and metric["asd_mm"] == pytest.approx(0.07)
    assert ("evaluate", 1, 1) in {(e["stage"], e["done"], e["total"]) for e in run.events if e["event"] == "progress"}
    result = run.last
    assert result["event"] == "result" and result["cases"] == 1 and result["failures"] == 0
    assert result["summary"]["lung_tumour"]["dice"] == pytest.approx(0.9)
    assert result["written"] == [str(tmp_path / "report" / "metrics.json"), str(tmp_path / "report" / "metrics.md")]

    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["software"]["version"] and report["command"][:2] == ["vqseg", "evaluate"]
    assert report["command"][report["command"].index("--label") + 1] == str(label)
    (case,) = report["cases"]
    scores = case["metrics"]["lung_tumour"]
    assert scores["jaccard"] == pytest.approx(90 / 110) and scores["hd95_mm"] == pytest.approx(0.7)
    assert scores["label_voxels"] == 100 and scores["label_ml"] == pytest.approx(100 * 0.7 * 0.9 * 1.25 / 1000)
    assert case["spacing_mm"] == pytest.approx([0.7, 0.9, 1.25])
    assert report["summary"]["classes"]["lung_tumour"]["dice"]["mean"] == pytest.approx(0.9)
    markdown = (tmp_path / "report" / "metrics.md").read_text()
    assert "| pred | lung_tumour | ok | 0.9000 | 0.8182 | 0.70 | 0.07 | 0.08 | 0.08 |" in markdown
    assert "## Summary" in markdown and "| lung_tumour | 1 | 0.9000 ± 0.0000 (0.9000) |" in markdown


def test_dataset_split_counts_misses_and_skips_unlabelled_cases(cli, tmp_path, dataset):
    spec, predictions = dataset
    run = cli("evaluate", "--dataset", spec, "--predictions", predictions, "--out", tmp_path / "report", "--events")
    assert run.returncode == 0, run.stderr
    assert [(e["case"], e["status"]) for e in run.events if e["event"] == "metric"] == [("miss", "missed"), ("none", "both_empty"), ("good", "ok")]
    assert any(e["event"] == "log" and "skipped 1 unlabelled" in e["message"] for e in run.events)
    result = run.last
    assert result["split"] == "test" and result["cases"] == 3 and result["failures"] == 1
    summary = result["summary"]["lung_tumour"]
    assert summary["dice"] == pytest.approx((0.9 + 0.0 + 1.0) / 3)
    assert summary["hd95_mm"] == pytest.approx((0.7 + 0.0) / 2)  # the miss has no distance, not 0 mm
    assert (summary["missed"], summary["false_positive"], summary["both_empty"]) == (1, 0, 1)

    report = json.loads((tmp_path / "report" / "metrics.json").read_text(), parse_constant=refuse)  # strict JSON: no NaN
    miss = report["cases"][0]
    assert miss["id"] == "miss" and miss["prediction"].endswith("miss.mha")
    assert miss["metrics"]["lung_tumour"]["hd95_mm"] is None and miss["metrics"]["lung_tumour"]["dice"] == 0.0
    assert report["summary"]["classes"]["lung_tumour"]["hd95_mm"]["n"] == 2
    assert report["source"]["split"] == "test" and report["source"]["name"] == "pilot"
    markdown = (tmp_path / "report" / "metrics.md").read_text()
    assert "| miss | lung_tumour | missed | 0.0000 | 0.0000 | — | — |" in markdown
    assert "| lung_tumour | 3 | 0.6333 ± " in markdown and "| 1 | 0 | 1 |" in markdown


def test_human_mode_with_a_class_table_prints_a_summary_and_writes_nothing(cli, tmp_path, pair):
    prediction, label = pair
    write(label, plate() * 2)  # the class table below says 2 is the tumour
    write(prediction, plate(shift_x=1) * 2)
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"classes": [{"value": 2, "id": "tumour"}]}))  # a card or spec holding a table
    before = files_under(tmp_path)
    run = cli("evaluate", "--prediction", prediction, "--label", label, "--classes", classes)
    assert run.returncode == 0, run.stderr
    assert "tumour:" in run.stdout and "dice: 0.9" in run.stdout and "failures: 0" in run.stdout
    assert "written" not in run.stdout
    assert files_under(tmp_path) == before


def test_geometry_mismatch_in_the_last_case_exits_2_and_writes_nothing(cli, tmp_path, dataset):
    spec, predictions = dataset
    shifted = {**GEOMETRY, "origin": (0.0, 0.0, 0.0)}
    write(predictions / "good.nrrd", plate(shift_x=1), shifted)
    before = files_under(tmp_path)
    run = cli("evaluate", "--dataset", spec, "--predictions", predictions, "--out", tmp_path / "report", "--events")
    assert run.returncode == 2
    message = run.last["message"]
    assert "case 'good'" in message and "good.nrrd" in message and "origin" in message
    assert files_under(tmp_path) == before and not (tmp_path / "report").exists()


@pytest.mark.parametrize("where", ["prediction", "label"])
def test_label_values_outside_the_class_table_exit_2(cli, tmp_path, pair, where):
    prediction, label = pair
    write(prediction if where == "prediction" else label, plate(value=1) + plate(shift_x=1, value=2) * (plate() == 0) * 3)
    run = cli("evaluate", "--prediction", prediction, "--label", label, "--out", tmp_path / "report", "--events")
    assert run.returncode == 2
    message = run.last["message"]
    assert "case 'pred'" in message and f"the {where}" in message and "[6]" in message and "known: [1]" in message
    assert not (tmp_path / "report").exists()


def test_missing_prediction_names_the_case(cli, tmp_path, dataset):
    spec, predictions = dataset
    (predictions / "none.nii.gz").unlink()
    run = cli("evaluate", "--dataset", spec, "--predictions", predictions, "--out", tmp_path / "report", "--events")
    assert run.returncode == 2
    assert "case 'none'" in run.last["message"] and "none.nii.gz" in run.last["message"]
    assert not (tmp_path / "report").exists()


def test_two_predictions_for_one_case_are_ambiguous(cli, tmp_path, dataset):
    spec, predictions = dataset
    write(predictions / "good.nii.gz", plate())
    run = cli("evaluate", "--dataset", spec, "--predictions", predictions, "--events")
    assert run.returncode == 2
    assert "case 'good'" in run.last["message"] and "good.nii.gz" in run.last["message"] and "good.nrrd" in run.last["message"]


def test_split_without_labelled_cases_exits_2(cli, tmp_path, dataset):
    spec, predictions = dataset
    data = json.loads(spec.read_text())
    data["cases"] = [case for case in data["cases"] if case["split"] == "train" or case["id"] == "unl"]
    spec.write_text(json.dumps(data))
    run = cli("evaluate", "--dataset", spec, "--predictions", predictions, "--events")  # default split: test
    assert run.returncode == 2
    assert str(spec) in run.last["message"] and "'test' split has no labelled case" in run.last["message"]
    run = cli("evaluate", "--dataset", spec, "--predictions", predictions, "--split", "val", "--events")
    assert run.returncode == 2 and "'val' split has no labelled case" in run.last["message"]


@pytest.mark.parametrize(
    "arguments, phrase",
    [
        (lambda p, l, d: ["--prediction", p], "needs a prediction and a label"),
        (lambda p, l, d: ["--prediction", p, "--label", l, "--dataset", d / "spec.json"], "two different forms"),
        (lambda p, l, d: ["--dataset", d / "spec.json"], "needs both --dataset and --predictions"),
        (lambda p, l, d: ["--prediction", p, "--label", d / "absent.nii.gz"], "no such file"),
        (lambda p, l, d: ["--prediction", p, "--label", l, "--out", p], "not a folder"),
        (lambda p, l, d: ["--prediction", p, "--label", l, "--out", d / "no" / "such" / "folder"], "does not exist"),
        (lambda p, l, d: ["--prediction", p, "--label", l, "--classes", d / "bad.json"], "not a readable JSON"),
    ],
)
def test_bad_arguments_exit_2(cli, tmp_path, pair, arguments, phrase):
    prediction, label = pair
    (tmp_path / "bad.json").write_text("{")
    before = files_under(tmp_path)
    run = cli("evaluate", *arguments(prediction, label, tmp_path), "--events")
    assert run.returncode == 2
    assert phrase in run.last["message"] and run.last["hint"]
    assert files_under(tmp_path) == before

