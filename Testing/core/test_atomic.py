"""Atomic outputs: a reader sees the old file or the complete new one, never a part or a temporary."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from helpers.images import GEOMETRIES, make_image
from VQSegCore.atomic import atomic_output, full_suffix, remove_stale_temporaries, write_text_atomic
from VQSegCore.errors import InputError
from VQSegCore.io import write_label_map


@pytest.mark.parametrize(
    "name, suffix",
    [("a.nii.gz", ".nii.gz"), ("b.seg.nrrd", ".seg.nrrd"), ("c.nrrd", ".nrrd"), ("d.json", ".json"), ("e.tar.gz", ".gz"), ("f", "")],
)
def test_full_suffix_keeps_the_format_extension(name, suffix):
    assert full_suffix(Path(name)) == suffix


def test_failure_inside_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temp:
            assert temp.parent == tmp_path and temp.name.endswith(".json")
            temp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_success_replaces_the_file(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_full_disk_becomes_an_input_error_and_nothing_is_left(tmp_path, monkeypatch):
    reference = make_image(GEOMETRIES["oblique"])
    labels = np.zeros(tuple(reversed(reference.GetSize())), np.uint8)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(InputError) as caught:
        write_label_map(labels, reference, tmp_path / "label.nii.gz")
    assert "disk is full" in caught.value.message and str(tmp_path / "label.nii.gz") in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder_is_an_input_error(tmp_path):
    reference = make_image(GEOMETRIES["identity"])
    labels = np.zeros(tuple(reversed(reference.GetSize())), np.uint8)
    with pytest.raises(InputError, match="does not exist"):
        write_label_map(labels, reference, tmp_path / "missing" / "label.nii.gz")
    (tmp_path / "taken.nii.gz").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        write_label_map(labels, reference, tmp_path / "taken.nii.gz")


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".vqseg-tmp-0123456789ab-out.nii.gz").write_bytes(b"partial")
    (tmp_path / "keep.nii.gz").write_bytes(b"complete")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".vqseg-tmp-0123456789ab-out.nii.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz"]
