"""DICOM series that are not one uniform volume: exit 2 naming the fault, instead of a volume with a wrong spacing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.images import make_image, write_dicom_series
from VQSegCore.errors import InputError
from VQSegCore.io import read_volume

GEOMETRY = dict(spacing=(0.7, 0.7, 1.5), origin=(-50.0, -60.0, -200.0), direction=np.eye(3))


def series(folder, slices=8, size=(16, 12)):
    return write_dicom_series(make_image(GEOMETRY, size=(*size, slices)), folder, "1.2.826.0.1.3680043.8.498.77")


def faulty(tmp_path) -> dict:
    """name → (folder, phrase)."""
    made = {}
    duplicate = tmp_path / "duplicate"
    files = series(duplicate)
    shutil.copy(files[3], duplicate / "copy_of_slice_3.dcm")  # same position, another file
    made["duplicate position"] = (duplicate, "same position")
    gap = tmp_path / "gap"
    files = series(gap)
    files[4].unlink()
    made["gap"] = (gap, "not evenly spaced")
    truncated = tmp_path / "truncated"
    files = series(truncated)
    files[2].write_bytes(files[2].read_bytes()[:-100])
    made["truncated slice"] = (truncated, "truncated")
    empty = tmp_path / "empty"
    files = series(empty)
    files[5].write_bytes(files[5].read_bytes()[:400])  # cut inside its header: GDCM leaves it out, which leaves a gap
    made["cut header"] = (empty, "not evenly spaced")
    mixed = tmp_path / "mixed"
    series(mixed, slices=4)
    other = write_dicom_series(make_image(dict(GEOMETRY, origin=(-50.0, -60.0, -194.0)), size=(16, 14, 4)), tmp_path / "mixed_tmp",
                               "1.2.826.0.1.3680043.8.498.77")
    for path in other:
        shutil.move(path, mixed / ("b_" + path.name))
    made["mixed sizes"] = (mixed, "different sizes")
    return made


def test_a_sound_series_reads_with_its_spacing(tmp_path):
    series(tmp_path / "ok")
    assert read_volume(tmp_path / "ok").image.GetSpacing() == pytest.approx((0.7, 0.7, 1.5))


def test_each_faulty_series_is_refused_in_process(tmp_path):
    for name, (folder, phrase) in faulty(tmp_path).items():
        with pytest.raises(InputError) as raised:
            read_volume(folder)
        assert phrase in raised.value.message, (name, raised.value.message)
        assert "not a uniform volume" in raised.value.message and raised.value.hint


def test_segment_on_a_series_with_a_gap_exits_2_and_writes_nothing(cli, tmp_path):
    folder, phrase = faulty(tmp_path)["gap"]
    run = cli("segment", folder, "-o", tmp_path / "out.nii.gz", "--events")
    assert run.returncode == 2 and phrase in run.last["message"] and "1.5" in run.last["message"]
    assert not (tmp_path / "out.nii.gz").exists()
