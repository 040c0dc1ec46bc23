"""A full disk: exit 2 naming the disk, no file published, nothing half-written left behind.

ITK's NIfTI writer returns normally on a full disk, so these tests use a real 2 MiB tmpfs (root only;
skipped elsewhere) and a simulated writer that leaves a truncated or empty file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers.images import GEOMETRIES, make_image
from helpers.stores import pool_with_one_case
from VQSegCore.errors import InputError
from VQSegCore.io import write as write_module
from VQSegCore.io.write import write_image
from VQSegCore.model import VQSegConfig, build_model, save_model
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.pool import Pool

CONFIG = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, preprocessing=PreprocessingConfig(spacing_mm=(1.5, 1.5)))


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 2 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> None:
    """Fill the file system until about `leave_bytes` are free."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "filler")


def test_synth_on_a_full_disk_exits_2_and_publishes_nothing(cli, small_disk):
    fill(small_disk, 0)
    run = cli("synth", small_disk / "ct.nii.gz", "--label", small_disk / "label.nii.gz", "--size", "96", "96", "--slices", "30",
              "--spacing", "3", "3", "5", "--events")
    assert run.returncode == 2, run.stderr
    assert "disk is full" in run.last["message"] and "ct.nii.gz" in run.last["message"]
    assert visible(small_disk) == []


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_an_image_larger_than_the_free_space_exits_2(cli, small_disk, suffix):
    # noise does not compress: ~1 MiB of int16 into ~0.5 MiB of room
    fill(small_disk, 512 * 1024)
    run = cli("synth", small_disk / f"ct{suffix}", "--size", "128", "128", "--slices", "32", "--spacing", "3", "3", "5",
              "--noise", "300", "--events")
    assert run.returncode == 2, run.stderr
    assert "disk is full" in run.last["message"], run.last
    assert "Traceback" not in run.stderr
    assert visible(small_disk) == []


def test_segment_with_uncertainty_on_a_nearly_full_disk(cli, tmp_path, small_disk):
    torch.manual_seed(0)
    save_model(build_model(CONFIG), tmp_path / "model")
    write_image(make_image(GEOMETRIES["oblique"], size=(96, 96, 24)), tmp_path / "ct.nii.gz")
    fill(small_disk, 200 * 1024)
    run = cli("segment", tmp_path / "ct.nii.gz", "-o", small_disk / "label.nii.gz", "--uncertainty", small_disk / "u.nii.gz",
              "--model-dir", tmp_path / "model", "--events")
    assert run.returncode == 2, run.stderr
    assert "u.nii.gz" in run.last["message"] and "disk is full" in run.last["message"]
    # the label fitted and is whole; the uncertainty map that did not fit is absent
    assert visible(small_disk) == ["label.nii.gz"]
    assert sitk.ReadImage(str(small_disk / "label.nii.gz")).GetSize() == (96, 96, 24)


def test_pool_add_on_a_full_disk_leaves_the_pool_intact(cli, tmp_path, small_disk):
    pool_with_one_case(small_disk / "pool", tmp_path)
    big = write_image(make_image(GEOMETRIES["identity"], size=(128, 128, 40), seed=3), tmp_path / "big.nii.gz")
    fill(small_disk, 64 * 1024)
    run = cli("pool", "add", big, "--pool", small_disk / "pool", "--events")
    assert run.returncode == 2, run.stderr
    assert "disk is full" in run.last["message"]
    os.unlink(small_disk / "filler")
    assert cli("pool", "verify", "--pool", small_disk / "pool", "--repair", "--events").returncode == 0
    assert len(Pool.open(small_disk / "pool").cases()) == 1


@pytest.mark.parametrize("damage", ["empty", "truncated", "raises"])
def test_a_writer_that_fails_silently_or_loudly_is_caught(tmp_path, monkeypatch, damage):
    """ENOSPC simulated: the writer leaves an empty or truncated file (as ITK's NIfTI writer does) or raises."""
    real_write = sitk.WriteImage

    def broken_write(image, path, useCompression=False):
        if damage == "raises":
            raise RuntimeError("itk::ERROR: MetaImageIO: file write failed")
        real_write(image, path, useCompression=useCompression)
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            handle.truncate(0 if damage == "empty" else size // 2)

    monkeypatch.setattr(write_module.sitk, "WriteImage", broken_write)
    image = make_image(GEOMETRIES["oblique"], size=(40, 30, 8))
    (tmp_path / "ct.nii.gz").write_bytes(b"the old file")
    with pytest.raises(InputError, match="cannot write .*ct.nii.gz") as raised:
        write_image(image, tmp_path / "ct.nii.gz")
    assert raised.value.hint
    assert (tmp_path / "ct.nii.gz").read_bytes() == b"the old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]


def test_a_whole_write_passes_the_check_with_every_pixel_type(tmp_path):
    for dtype in (np.uint8, np.int16, np.float32):
        array = (np.arange(5 * 6 * 7).reshape(5, 6, 7) % 200).astype(dtype)
        image = sitk.GetImageFromArray(array)
        for suffix in (".nii.gz", ".nrrd", ".mha", ".nii"):
            path = write_image(image, tmp_path / f"{np.dtype(dtype).name}{suffix}")
            np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), array)
