"""The dataset spec: loading, relative paths, splits, saving, and errors that name the file and the case."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from VQSegCore.classes import LUNG_TUMOUR, ClassTable, SegmentClass
from VQSegCore.dataset_spec import Case, DatasetSpec
from VQSegCore.errors import InputError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not read at load time")
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A spec in data/ with relative paths, one absolute path, and cases in every split."""
    folder = tmp_path / "data"
    for name in ("a", "b", "c", "d"):
        touch(folder / "images" / f"{name}.nii.gz")
    for name in ("a", "c"):
        touch(folder / "labels" / f"{name}.nii.gz")
    outside = touch(tmp_path / "elsewhere" / "d-label.nrrd")
    spec = {
        "name": "pilot",
        "cases": [
            {"id": "case-a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz", "split": "train"},
            {"id": "case-b", "image": "images/b.nii.gz", "split": "train"},
            {"id": "case-c", "image": "images/c.nii.gz", "label": "labels/c.nii.gz", "split": "val"},
            {"id": "case-d", "image": "images/d.nii.gz", "label": str(outside), "split": "test"},
        ],
    }
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def write_spec(tmp_path: Path, data) -> Path:
    touch(tmp_path / "img.nii.gz")
    touch(tmp_path / "lab.nii.gz")
    path = tmp_path / "spec.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def one_case(**changes) -> dict:
    case = {"id": "c1", "image": "img.nii.gz", "label": "lab.nii.gz", "split": "test"}
    case.update(changes)
    return {key: value for key, value in case.items() if value is not ...}


def test_relative_paths_resolve_against_the_spec_folder(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the spec's folder
    spec = DatasetSpec.load(Path("data") / "spec.json")
    case_a = spec.cases()[0]
    assert case_a.image == tmp_path / "data" / "images" / "a.nii.gz"
    assert case_a.image.is_absolute() and case_a.label == tmp_path / "data" / "labels" / "a.nii.gz"
    assert spec.cases()[3].label == tmp_path / "elsewhere" / "d-label.nrrd"
    assert spec.name == "pilot" and spec.classes == LUNG_TUMOUR


def test_cases_and_labelled_by_split(dataset):
    spec = DatasetSpec.load(dataset)
    assert [c.id for c in spec.cases()] == ["case-a", "case-b", "case-c", "case-d"]
    assert [c.id for c in spec.cases("train")] == ["case-a", "case-b"]
    assert [c.id for c in spec.labelled("train")] == ["case-a"]
    assert [c.id for c in spec.labelled()] == ["case-a", "case-c", "case-d"]
    assert [c.id for c in spec.require_labelled("test")] == ["case-d"]
    assert not spec.cases()[1].labelled


def test_require_labelled_names_the_spec_and_split(tmp_path):
    path = write_spec(tmp_path, {"cases": [one_case(label=...)]})
    spec = DatasetSpec.load(path)
    with pytest.raises(InputError) as raised:
        spec.require_labelled("test")
    assert str(path) in raised.value.message and "'test' split has no labelled case" in raised.value.message
    with pytest.raises(InputError, match="'val' split has no labelled case"):
        spec.require_labelled("val")


def test_save_and_load_round_trip_with_relative_paths(dataset, tmp_path):
    spec = DatasetSpec.load(dataset)
    copy = dataset.parent / "copy.json"
    spec.save(copy)
    saved = json.loads(copy.read_text())
    assert saved["cases"][0] == {"id": "case-a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz", "split": "train"}
    assert saved["cases"][3]["label"] == str(tmp_path / "elsewhere" / "d-label.nrrd")  # outside the folder: absolute
    assert "label" not in saved["cases"][1]
    assert DatasetSpec.load(copy) == spec
    assert [p.name for p in dataset.parent.iterdir() if p.name.startswith(".vqseg-tmp")] == []


def test_the_whole_folder_can_move(dataset, tmp_path):
    moved = tmp_path / "moved"
    os.rename(dataset.parent, moved)
    spec = DatasetSpec.load(moved / "spec.json")
    assert spec.cases()[0].image == moved / "images" / "a.nii.gz"


def test_class_table_is_read(tmp_path):
    classes = ClassTable((SegmentClass(1, "tumour", "Tumour", (1.0, 0.0, 0.0)), SegmentClass(2, "node", "Node", (0.0, 1.0, 0.0))))
    spec = DatasetSpec.load(write_spec(tmp_path, {"classes": classes.to_list(), "cases": [one_case()]}))
    assert spec.classes == classes
    assert spec.to_dict()["classes"] == classes.to_list()


def test_images_are_not_read_at_load_time(tmp_path):
    # The fixture files are not images at all; only their existence is checked.
    spec = DatasetSpec.load(write_spec(tmp_path, {"cases": [one_case()]}))
    assert spec.cases() == [Case("c1", tmp_path / "img.nii.gz", "test", tmp_path / "lab.nii.gz")]


@pytest.mark.parametrize(
    "data, phrases",
    [
        ("{not json", ["not valid JSON", "line 1"]),
        ([1, 2], ["top level must be a JSON object"]),
        ({"name": "x"}, ["\"cases\" list"]),
        ({"cases": []}, ["\"cases\" list"]),
        ({"cases": [one_case(), one_case()]}, ["'c1'", "more than once"]),
        ({"cases": [one_case(split="testing")]}, ["case 'c1'", "split 'testing'"]),
        ({"cases": [one_case(split=...)]}, ["case 'c1'", "split None"]),
        ({"cases": [one_case(image="missing.nii.gz")]}, ["case 'c1'", "image file", "missing.nii.gz", "does not exist"]),
        ({"cases": [one_case(label="labels/none.nrrd")]}, ["case 'c1'", "label file", "labels/none.nrrd", "does not exist"]),
        ({"cases": [one_case(image=...)]}, ["case 'c1'", "\"image\" must be a path"]),
        ({"cases": [one_case(lable="lab.nii.gz")]}, ["case 'c1'", "unknown key 'lable'"]),
        ({"cases": [one_case(id="../escape")]}, ["case #1", "'../escape'"]),
        ({"cases": [one_case(), one_case(id=...)]}, ["case #2", "None"]),
        ({"cases": ["c1"]}, ["case #1 is not an object"]),
        ({"cases": [one_case()], "classes": [{"value": 0, "id": "bg"}]}, ["bad class table", "outside 1..255"]),
        ({"cases": [one_case()], "classes": [{"id": "tumour"}]}, ["bad class table", "missing field 'value'"]),
        ({"cases": [one_case()], "classes": {"value": 1}}, ["\"classes\" must be a list"]),
        ({"cases": [one_case()], "name": 3}, ["\"name\" must be a string"]),
        ({"cases": [one_case()], "extra": 1}, ["unknown key 'extra'"]),
    ],
)
def test_bad_specs_are_input_errors_naming_the_file_and_case(tmp_path, data, phrases):
    path = write_spec(tmp_path, data)
    with pytest.raises(InputError) as raised:
        DatasetSpec.load(path)
    message = raised.value.message
    assert message.startswith(f"dataset spec {path}")
    for phrase in phrases:
        assert phrase in message, message
    assert raised.value.hint


def test_missing_spec_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        DatasetSpec.load(tmp_path / "absent.json")
