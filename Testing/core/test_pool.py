"""The training pool API: adding, labelling, removing, verifying, exporting; atomicity, locking, no PHI."""

from __future__ import annotations

import gzip
import hashlib
import json
import locale
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.images import GEOMETRIES, make_image, write_dicom_series
from helpers.paths import REPO
from VQSegCore.classes import LUNG_TUMOUR, ClassTable, SegmentClass
from VQSegCore.dataset_spec import DatasetSpec
from VQSegCore.errors import InputError
from VQSegCore.io.write import write_image, write_label_map
from VQSegCore.pool import LABELLED, UNLABELLED, Pool, pool_folder
from VQSegCore.pool.records import edited_voxels

SIZE = (64, 64, 40)  # x, y, z: small enough to keep every test fast
CASE_ID = re.compile(r"^case-(\d{4})-[0-9a-f]{6}$")


def write_inputs(folder: Path, geometry: str = "oblique", seed: int = 0) -> dict:
    """A CT, a corrected label and the model's draft on the same grid; returns paths and arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    image = make_image(GEOMETRIES[geometry], size=SIZE, seed=seed)
    label = np.zeros(tuple(reversed(SIZE)), np.uint8)
    label[10:20, 20:40, 20:40] = 1
    draft = label.copy()
    draft[10:12] = 0  # the correction added two slices of 20×20 …
    draft[20:22, 20:40, 20:40] = 1  # … and removed two false-positive slices
    paths = {"image": write_image(image, folder / "ct.nrrd"),
             "label": write_label_map(label, image, folder / "corrected.nii.gz"),
             "draft": write_label_map(draft, image, folder / "draft.nii.gz")}
    return {**paths, "image_sitk": image, "label_array": label, "draft_array": draft}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_lines(pool: Pool) -> list[dict]:
    return [json.loads(line) for line in pool.layout.manifest.read_text().splitlines()]


@pytest.fixture
def inputs(tmp_path) -> dict:
    return write_inputs(tmp_path / "inputs")


@pytest.fixture
def pool(tmp_path) -> Pool:
    return Pool.create(tmp_path / "pool", "pilot")


def test_add_stores_files_meta_and_manifest(pool, inputs):
    record = pool.add(inputs["image"], label=inputs["label"], draft=inputs["draft"], draft_model="lung-lesion/v0003")

    folder = pool.folder / "cases" / record.case_id
    assert record.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == ["draft.nii.gz", "image.nii.gz", "label.nii.gz", "meta.json"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["case_id"] == record.case_id and CASE_ID.match(record.case_id)
    assert meta["status"] == LABELLED and meta["draft_model"] == "lung-lesion/v0003" and meta["classes"] == [1]
    assert meta["source_name"] == "ct.nrrd"
    assert meta["sha256"] == {name: sha256(folder / name) for name in ("image.nii.gz", "label.nii.gz", "draft.nii.gz")}
    expected_edits = int(np.count_nonzero(inputs["label_array"] != inputs["draft_array"]))
    assert expected_edits == 4 * 20 * 20
    assert meta["edited_voxels"] == {"lung_tumour": expected_edits}
    assert meta["added"] == meta["updated"] and meta["added"].endswith("Z")
    assert [entry["op"] for entry in meta["history"]] == ["add"]
    assert meta["history"][0]["label_sha256"] == meta["sha256"]["label.nii.gz"]

    # The stored files hold the input voxels on the input's grid (an oblique one).
    image = sitk.ReadImage(str(folder / "image.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(inputs["image_sitk"]))
    np.testing.assert_allclose(image.GetDirection(), inputs["image_sitk"].GetDirection(), atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), inputs["image_sitk"].GetOrigin(), atol=1e-4)
    assert meta["geometry"]["size"] == list(SIZE)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "label.nii.gz"))), inputs["label_array"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "draft.nii.gz"))), inputs["draft_array"])

    (line,) = manifest_lines(pool)
    assert line["op"] == "add" and line["case_id"] == record.case_id and line["status"] == LABELLED and "time" in line
    assert [case.case_id for case in pool.cases()] == [record.case_id]
    assert pool.case(record.case_id) == record


def test_a_pool_written_with_the_old_spelling_reads_and_verifies(pool, inputs):
    """meta.json files written before the spelling was settled say "labeled" / "unlabeled"."""
    labelled = pool.add(inputs["image"], label=inputs["label"])
    unlabelled = pool.add(inputs["image"])
    for record, old in ((labelled, "labeled"), (unlabelled, "unlabeled")):
        meta_path = record.folder / "meta.json"
        meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "status": old}))
    assert {c.case_id: c.status for c in pool.cases()} == {labelled.case_id: LABELLED, unlabelled.case_id: "unlabelled"}
    assert pool.verify().intact


def test_unlabelled_case_gets_a_label_and_a_recorrection_keeps_the_history(pool, inputs, tmp_path):
    record = pool.add(inputs["image"], draft=inputs["draft"])
    assert record.status == UNLABELLED and record.label_path is None and record.edited_voxels is None

    first = pool.update_label(record.case_id, inputs["label"])
    assert first.status == LABELLED and first.added == record.added and first.updated > record.added
    assert first.edited_voxels == {"lung_tumour": 4 * 20 * 20}
    first_hash = first.sha256["label.nii.gz"]
    assert first_hash == sha256(first.label_path)
    assert first.sha256["image.nii.gz"] == record.sha256["image.nii.gz"] == sha256(first.image_path)

    recorrected = inputs["label_array"].copy()
    recorrected[30, 0:5, 0:5] = 1
    write_label_map(recorrected, inputs["image_sitk"], tmp_path / "again.nii.gz")
    second = pool.update_label(record.case_id, tmp_path / "again.nii.gz")
    assert second.sha256["label.nii.gz"] != first_hash
    assert second.edited_voxels == {"lung_tumour": 4 * 20 * 20 + 25}
    assert [h["op"] for h in second.history] == ["add", "update_label", "update_label"]
    assert second.history[1]["previous_label_sha256"] is None
    assert second.history[2]["previous_label_sha256"] == first_hash
    assert [line["op"] for line in manifest_lines(pool)] == ["add", "update", "update"]
    assert pool.case(record.case_id) == second
    assert sorted(p.name for p in pool.layout.cases_dir.iterdir()) == [record.case_id]  # no scratch folder left
    assert pool.verify().clean


def test_case_ids_are_generated_and_never_reused(pool, inputs, tmp_path):
    named = tmp_path / "Smith_John_scan.nrrd"
    named.write_bytes(Path(inputs["image"]).read_bytes())
    first = pool.add(named)
    second = pool.add(inputs["image"])
    assert "smith" not in first.case_id.lower() and first.source_name == "Smith_John_scan.nrrd"
    pool.remove(second.case_id)
    third = pool.add(inputs["image"])
    numbers = [int(CASE_ID.match(r.case_id).group(1)) for r in (first, second, third)]
    assert numbers == [1, 2, 3]  # the removed case's number is not given out again
    assert [r.case_id for r in pool.cases()] == [first.case_id, third.case_id]
    assert [(line["op"], line["case_id"]) for line in manifest_lines(pool)] == [
        ("add", first.case_id), ("add", second.case_id), ("remove", second.case_id), ("add", third.case_id)]


@pytest.mark.parametrize("problem", ["missing image", "missing label", "label on another grid", "unknown label values", "unknown draft values"])
def test_bad_input_raises_and_writes_nothing(pool, inputs, tmp_path, problem):
    pool.add(inputs["image"])
    before = snapshot(pool.folder)
    other_grid = make_image(GEOMETRIES["identity"], size=SIZE)
    bad = np.zeros(tuple(reversed(SIZE)), np.uint8)
    bad[5, 5, 5], bad[6, 6, 6] = 7, 3
    arguments, expected = {
        "missing image": ((tmp_path / "nope.nii.gz",), {}), "missing label": ((inputs["image"],), {"label": tmp_path / "nope.nii.gz"}),
        "label on another grid": ((inputs["image"],), {"label": write_label_map(inputs["label_array"], other_grid, tmp_path / "grid.nii.gz")}),
        "unknown label values": ((inputs["image"],), {"label": write_label_map(bad, inputs["image_sitk"], tmp_path / "values.nii.gz")}),
        "unknown draft values": ((inputs["image"],), {"draft": write_label_map(bad, inputs["image_sitk"], tmp_path / "values.nii.gz")}),
    }[problem], {
        "missing image": "nope.nii.gz", "missing label": "nope.nii.gz", "label on another grid": "grid.nii.gz is not on the voxel grid",
        "unknown label values": "label values.nii.gz: label values 3, 7 are not in the pool's class table",
        "unknown draft values": "draft values.nii.gz: label values 3, 7 are not in the pool's class table",
    }[problem]
    with pytest.raises(InputError) as raised:
        pool.add(*arguments[0], **arguments[1])
    assert expected in raised.value.message.replace(str(tmp_path) + "/", "")
    assert snapshot(pool.folder) == before


def test_update_and_remove_of_an_unknown_case_are_input_errors(pool, inputs):
    pool.add(inputs["image"])
    before = snapshot(pool.folder)
    for action in (lambda: pool.update_label("case-0099-abcdef", inputs["label"]), lambda: pool.remove("case-0099-abcdef"),
                   lambda: pool.case("../../etc")):
        with pytest.raises(InputError, match="no case"):
            action()
    assert snapshot(pool.folder) == before


def test_open_and_create_refuse_folders_that_are_not_pools(tmp_path):
    with pytest.raises(InputError, match="not a VQSeg pool"):
        Pool.open(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        Pool.open(tmp_path / "missing")
    (tmp_path / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="not empty"):
        Pool.create(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.jpg"]

    newer = Pool.create(tmp_path / "newer")
    data = json.loads(newer.layout.pool_file.read_text())
    newer.layout.pool_file.write_text(json.dumps({**data, "format_version": 2}))
    with pytest.raises(InputError, match="newer VQSeg"):
        Pool.open(tmp_path / "newer")


def test_a_creator_that_loses_the_race_opens_the_pool_the_winner_wrote(tmp_path, monkeypatch):
    import VQSegCore.pool.pool_file as pool_file

    winner = Pool.create(tmp_path / "p")
    real_is_pool, looks = pool_file.is_pool, []

    def first_look_before_the_winner_wrote(layout):
        looks.append(layout)
        return len(looks) > 1 and real_is_pool(layout)

    monkeypatch.setattr(pool_file, "is_pool", first_look_before_the_winner_wrote)
    loser, created = Pool.open_or_create(tmp_path / "p")
    assert not created and loser.info == winner.info and len(looks) == 2  # the second look, under the lock


def test_open_or_create_creates_once_and_keeps_the_class_table(tmp_path):
    two = ClassTable((SegmentClass(1, "tumour", "Tumour", (1, 0, 0)), SegmentClass(2, "node", "Node", (0, 1, 0))))
    pool, created = Pool.open_or_create(tmp_path / "p", classes=two)
    assert created and pool.classes == two
    again, created_again = Pool.open_or_create(tmp_path / "p")
    assert not created_again and again.classes == two
    with pytest.raises(InputError, match="another class table"):
        Pool.open_or_create(tmp_path / "p", classes=LUNG_TUMOUR)
    pool_json = json.loads((tmp_path / "p" / "pool.json").read_text())
    assert pool_json["format_version"] == 1 and pool_json["name"] == "p" and [c["id"] for c in pool_json["classes"]] == ["tumour", "node"]


def test_pool_folder_takes_a_name_under_the_home_or_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("VQSEG_HOME", str(tmp_path / "home"))
    assert pool_folder("pilot") == tmp_path / "home" / "pools" / "pilot"
    assert pool_folder(str(tmp_path / "x")) == tmp_path / "x"
    assert pool_folder("./x") == Path("./x")
    with pytest.raises(InputError):
        pool_folder("bad name!")
    monkeypatch.setenv("VQSEG_POOL", "from-env")  # no --pool: $VQSEG_POOL, read when asked
    assert pool_folder(None) == tmp_path / "home" / "pools" / "from-env"
    monkeypatch.setenv("VQSEG_POOL", "")
    with pytest.raises(InputError, match="no pool given"):
        pool_folder(None)


def test_edited_voxels_count_each_class_separately():
    classes = ClassTable((SegmentClass(1, "tumour", "Tumour", (1, 0, 0)), SegmentClass(2, "node", "Node", (0, 1, 0))))
    draft = np.zeros((2, 4, 4), np.uint8)
    label = draft.copy()
    draft[0, :2, :2] = 1  # 4 voxels of tumour in the draft …
    label[0, :2, :2] = 2  # … that the clinician relabelled as node
    label[1, 0, 0] = 1  # and one missed tumour voxel
    assert edited_voxels(label, draft, classes) == {"tumour": 5, "node": 4}


@pytest.fixture
def keep_locale():
    # SimpleITK's DICOM writer sets the process locale to plain "C" (ASCII); without this, later tests in
    # the same process fail to decode a child's UTF-8 output (e.g. progress bars).
    saved = locale.setlocale(locale.LC_ALL)
    yield
    locale.setlocale(locale.LC_ALL, saved)


def test_dicom_input_stores_no_patient_data(pool, tmp_path, keep_locale):
    image = make_image(GEOMETRIES["negative_axes"], size=(32, 32, 12))
    write_dicom_series(image, tmp_path / "series_a", "1.2.826.0.1.3680043.8.498.71")
    write_dicom_series(image, tmp_path / "Doe_Jane PATIENT-123", "1.2.826.0.1.3680043.8.498.72")
    plain = pool.add(tmp_path / "series_a")
    named = pool.add(tmp_path / "Doe_Jane PATIENT-123")
    assert plain.source_name == "series_a"
    assert named.source_name == "DICOM series"  # the folder is named after the patient: not kept
    with pytest.raises(InputError, match="patient"):
        pool.add(tmp_path / "series_a", source_name="scan of jane doe")
    stored = sitk.ReadImage(str(plain.image_path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(stored), sitk.GetArrayFromImage(image))

    pool.export_spec(pool.folder / "spec.json")
    for path in pool.folder.rglob("*"):
        if path.is_file():
            data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
            for secret in (b"Doe^Jane", b"Jane", b"PATIENT-123", b"PATIENT", b"jane"):
                assert secret not in data, f"{secret!r} found in {path}"


def test_verify_finds_a_changed_file_a_missing_file_a_broken_meta_and_leftovers(pool, inputs):
    cases = [pool.add(inputs["image"], label=inputs["label"], draft=inputs["draft"]) for _ in range(4)]
    report = pool.verify()
    assert report.intact and report.clean and report.cases_checked == 4 and not report.warnings

    label = cases[0].label_path
    data = bytearray(label.read_bytes())
    data[-10] ^= 0xFF
    label.write_bytes(bytes(data))
    cases[1].draft_path.unlink()
    (cases[2].folder / "meta.json").write_text("{not json")
    stray = pool.layout.cases_dir / ".building-case-0042-abcdef-123456"
    stray.mkdir()
    (stray / "image.nii.gz").write_bytes(b"half")

    report = pool.verify()
    assert not report.intact
    assert any(cases[0].case_id in p and "label.nii.gz has changed" in p for p in report.problems)
    assert any(cases[1].case_id in p and "draft.nii.gz is missing" in p for p in report.problems)
    assert any(cases[2].case_id in p and "not valid JSON" in p for p in report.problems)
    assert len(report.problems) == 3
    assert report.leftovers == ["cases/.building-case-0042-abcdef-123456"]
    assert stray.exists()  # verify only looks
    assert [r.case_id for r in pool.cases()] == [cases[0].case_id, cases[1].case_id, cases[3].case_id]

    repaired = pool.verify(repair=True)
    assert not stray.exists() and repaired.repaired == ["deleted cases/.building-case-0042-abcdef-123456"]
    assert len(repaired.problems) == 3  # damage is reported, never "repaired" away


def test_verify_repair_restores_a_case_caught_between_the_two_renames_of_an_update(pool, inputs):
    record = pool.add(inputs["image"], label=inputs["label"])
    half_swapped = pool.layout.cases_dir / f".replaced-{record.case_id}-0a1b2c"
    os.rename(record.folder, half_swapped)
    report = pool.verify()
    assert not report.intact and "previous version" in report.problems[0]
    pool.verify(repair=True)
    assert pool.verify().clean and pool.case(record.case_id) == record


def test_a_failed_build_leaves_no_case_and_no_log_line(pool, inputs, monkeypatch):
    import VQSegCore.pool.case_changes as adding

    def crash(*_args):
        raise KeyboardInterrupt  # Ctrl-C or a cancel at the worst moment: everything written, not yet renamed

    monkeypatch.setattr(adding, "move_folder", crash)
    with pytest.raises(KeyboardInterrupt):
        pool.add(inputs["image"], label=inputs["label"])
    assert list(pool.layout.cases_dir.iterdir()) == []
    assert pool.layout.manifest.read_text() == ""


def test_a_left_over_building_folder_is_not_a_case(pool, inputs):
    pool.add(inputs["image"])
    building = pool.layout.cases_dir / ".building-case-0002-abcdef-fedcba"
    building.mkdir()
    assert len(pool.cases()) == 1
    assert CASE_ID.match(pool.add(inputs["image"]).case_id).group(1) == "0003"  # numbers seen in scratch folders are skipped too


def test_a_held_lock_makes_writers_and_verify_wait_then_fail_as_busy(pool, inputs):
    other = Pool.open(pool.folder, lock_timeout_s=0.3)
    with pool.lock():
        for action in (lambda: other.add(inputs["image"]), other.verify, lambda: other.remove("case-0001-abcdef")):
            with pytest.raises(InputError, match="busy"):
                action()
    assert pool.cases() == []
    with pool.lock(shared=True):
        assert other.verify().intact  # readers share the lock
    assert other.add(inputs["image"]).status == UNLABELLED


def test_a_torn_manifest_line_is_skipped_and_closed(pool, inputs):
    pool.add(inputs["image"])
    with open(pool.layout.manifest, "a") as log:
        log.write('{"time": "2025-01-01T00:00:00Z", "op": "ad')  # a crash in the middle of an append
    second = pool.add(inputs["image"])
    assert [entry["case_id"] for entry in pool.manifest()] == [pool.cases()[0].case_id, second.case_id]
    report = pool.verify()
    assert report.intact and any("unreadable line(s) 2" in w for w in report.warnings)


def test_export_spec_lists_labelled_and_unlabelled_cases_for_train(pool, inputs, tmp_path):
    labelled = [pool.add(inputs["image"], label=inputs["label"]) for _ in range(4)]
    unlabelled = pool.add(inputs["image"], draft=inputs["draft"])
    (tmp_path / "specs").mkdir()
    spec_path = pool.export_spec(tmp_path / "specs" / "all.json")  # outside the pool: paths go through ..

    raw = json.loads(spec_path.read_text())
    assert all(not Path(case["image"]).is_absolute() for case in raw["cases"])  # relative: pool and spec move together
    spec = DatasetSpec.load(spec_path)
    assert [c.id for c in spec.cases("train")] == [r.case_id for r in labelled] + [unlabelled.case_id]
    assert [c.id for c in spec.labelled("train")] == [r.case_id for r in labelled]
    assert spec.classes == pool.classes and spec.cases("val") == []
    assert spec.cases()[0].image == labelled[0].image_path and spec.cases()[0].label == labelled[0].label_path

    with_val = DatasetSpec.load(pool.export_spec(pool.folder / "split.json", val_fraction=0.5, seed=3))
    assert len(with_val.cases("val")) == 2 and all(c.labelled for c in with_val.cases("val"))
    assert len(with_val.labelled("train")) == 2 and with_val.require_labelled("train")
    again = DatasetSpec.load(pool.export_spec(pool.folder / "split2.json", val_fraction=0.5, seed=3))
    assert [c.id for c in again.cases("val")] == [c.id for c in with_val.cases("val")]  # the seed decides
    only = DatasetSpec.load(pool.export_spec(pool.folder / "labelled.json", include_unlabelled=False))
    assert unlabelled.case_id not in [c.id for c in only.cases()]


_ADDER = textwrap.dedent("""
    import pathlib, sys, time
    from VQSegCore.pool import Pool
    folder, image, label, barrier = sys.argv[1:]
    pathlib.Path(barrier, "ready").touch()
    while not pathlib.Path(barrier, "go").exists():  # start both at the same moment, imports done
        time.sleep(0.005)
    pool, _ = Pool.open_or_create(folder)
    for _ in range(5):
        pool.add(image, label=label)
""")


def test_two_processes_adding_at_once_give_ten_complete_cases(tmp_path, inputs):
    folder = tmp_path / "shared-pool"  # not created yet: both processes race to create it too
    barriers = [tmp_path / f"barrier{n}" for n in range(2)]
    adders = []
    for barrier in barriers:
        barrier.mkdir()
        adders.append(subprocess.Popen([sys.executable, "-c", _ADDER, str(folder), str(inputs["image"]), str(inputs["label"]), str(barrier)],
                                       cwd=REPO, stderr=subprocess.PIPE, text=True))
    while not all((barrier / "ready").exists() for barrier in barriers):
        assert all(adder.poll() is None for adder in adders), "an adder died before the start"
        time.sleep(0.01)
    for barrier in barriers:
        (barrier / "go").touch()
    for adder in adders:
        assert adder.wait(timeout=120) == 0, adder.stderr.read()
    pool = Pool.open(folder)
    records = pool.cases()
    assert len(records) == 10
    assert sorted(int(CASE_ID.match(r.case_id).group(1)) for r in records) == list(range(1, 11))
    assert [line["op"] for line in manifest_lines(pool)] == ["add"] * 10
    assert {line["case_id"] for line in manifest_lines(pool)} == {r.case_id for r in records}
    report = pool.verify()
    assert report.clean and not report.warnings


def test_source_name_refuses_any_identifying_header_text(pool, tmp_path, keep_locale):
    import pydicom

    image = make_image(GEOMETRIES["identity"], size=(16, 16, 4))
    files = write_dicom_series(image, tmp_path / "series_b", "1.2.826.0.1.3680043.8.498.73")
    for file in files:
        dataset = pydicom.dcmread(file)
        dataset.AccessionNumber = "ACC778812"
        dataset.InstitutionName = "St Elsewhere Hospital"
        dataset.ReferringPhysicianName = "Kildare^James"
        dataset.StudyID = "1"
        dataset.save_as(file)
    for given in ("acc778812 follow-up", "st elsewhere scan", "from Dr Kildare"):
        with pytest.raises(InputError, match="identifying text"):
            pool.add(tmp_path / "series_b", source_name=given)
    assert pool.add(tmp_path / "series_b", source_name="site B, scan 1").source_name == "site B, scan 1"  # "1" is too short to count


def test_identifiers_match_whole_words_and_short_patient_ids_still_count():
    from VQSegCore.pool.privacy import _identifier_parts, _mentions

    institution = _identifier_parts("Ann Arbor Main Hospital")
    assert not _mentions("scanner standard, remaining", institution)  # "Ann", "Main" only as words
    assert _mentions("ann arbor follow-up", institution)
    short_id = _identifier_parts("017", is_id=True)
    assert _mentions("case 017", short_id) and not _mentions("scan 2017", short_id)
    assert _identifier_parts("1") == []  # a one-character study id would match every "scan 1"
