"""Images whose geometry is broken or implausible: segment and pool add exit 2 naming the fault; inspect shows it."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from VQSegCore.io.geometry import MAX_SPACING_MM, MIN_SPACING_MM


def image(spacing=(0.8, 0.8, 2.0), direction=None, size=(24, 20, 6)) -> sitk.Image:
    out = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 400, size[::-1]).astype(np.int16))
    out.SetSpacing(spacing)
    if direction is not None:
        out.SetDirection(tuple(np.asarray(direction, float).ravel()))
    return out


def nifti_with(path, field_offset: int, fmt: str, value) -> None:
    """A valid NIfTI-1 file, then one header field overwritten (dim at 40, pixdim at 76)."""
    sitk.WriteImage(image(), str(path.with_name("plain.nii")))
    data = bytearray(path.with_name("plain.nii").read_bytes())
    data[field_offset:field_offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.with_name("plain.nii").unlink()
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(bytes(data)))
    else:
        path.write_bytes(bytes(data))


def faulty_inputs(folder) -> dict:
    folder.mkdir(exist_ok=True)
    cases = {
        "spacing 1e-6 mm": (image(spacing=(1e-6, 1e-6, 1e-6)), ".nrrd", "outside"),
        "spacing 1e6 mm": (image(spacing=(1e6, 1e6, 1e6)), ".mha", "outside"),
        "spacing 50 mm": (image(spacing=(50, 50, 0.1)), ".nii.gz", "outside"),
        "non-orthonormal": (image(direction=[[1, 0.3, 0], [0, 1, 0], [0, 0, 1]]), ".nrrd", "not orthonormal"),
        "scaled direction": (image(direction=np.eye(3) * 2), ".mha", "not orthonormal"),
    }
    paths = {}
    for name, (img, suffix, phrase) in cases.items():
        path = folder / (name.replace(" ", "_") + suffix)
        sitk.WriteImage(img, str(path))
        paths[name] = (path, phrase)
    nifti_with(folder / "pixdim_zero.nii.gz", 80, "<f", 0.0)  # pixdim[1]
    nifti_with(folder / "pixdim_nan.nii", 84, "<f", float("nan"))  # pixdim[2]
    nifti_with(folder / "dim_zero.nii.gz", 46, "<h", 0)  # dim[3]
    paths["pixdim 0"] = (folder / "pixdim_zero.nii.gz", "pixdim")
    paths["pixdim NaN"] = (folder / "pixdim_nan.nii", "pixdim")
    paths["dim[3] 0"] = (folder / "dim_zero.nii.gz", "length of 0")
    return paths


def test_the_bounds_are_the_documented_ones():
    assert (MIN_SPACING_MM, MAX_SPACING_MM) == (0.05, 20.0)


def test_each_fault_is_refused_by_the_reader_every_command_uses(tmp_path):
    from VQSegCore.errors import InputError
    from VQSegCore.io import read_volume

    for name, (path, phrase) in faulty_inputs(tmp_path / "in").items():
        with pytest.raises(InputError) as raised:
            read_volume(path)
        assert phrase in raised.value.message and str(path) in raised.value.message, (name, raised.value.message)
        assert "truncated or corrupt" not in raised.value.message and raised.value.hint, name


@pytest.mark.parametrize("name", ["spacing 50 mm", "pixdim 0"])
def test_segment_refuses_a_fault_with_exit_2_and_writes_nothing(cli, tmp_path, name):
    path, phrase = faulty_inputs(tmp_path / "in")[name]
    run = cli("segment", path, "-o", tmp_path / "out.nii.gz", "--events", timeout=60)
    assert run.returncode == 2, run.stderr[-2000:]
    assert phrase in run.last["message"] and str(path) in run.last["message"]
    assert not (tmp_path / "out.nii.gz").exists()


def test_pool_add_refuses_a_fault_and_creates_no_case(cli, tmp_path):
    paths = faulty_inputs(tmp_path / "in")
    for name in ("spacing 1e-6 mm", "pixdim 0", "non-orthonormal"):
        run = cli("pool", "add", paths[name][0], "--pool", tmp_path / "pool", "--events")
        assert run.returncode == 2, (name, run.stderr[-2000:])
        assert paths[name][1] in run.last["message"]
    cases = tmp_path / "pool" / "cases"
    assert not cases.exists() or not [p for p in cases.iterdir() if not p.name.startswith(".")]


def test_inspect_shows_the_fault_instead_of_refusing(cli, tmp_path):
    paths = faulty_inputs(tmp_path / "in")
    run = cli("inspect", paths["spacing 1e-6 mm"][0], "--events")
    assert run.returncode == 0
    assert "outside" in run.last["geometry_problems"][0]
    warnings = [e["message"] for e in run.events if e["event"] == "log" and e["level"] == "warning"]
    assert any("other commands refuse this image" in w for w in warnings)
    nifti = cli("inspect", paths["pixdim 0"][0], "--events")
    assert nifti.returncode == 0 and "pixdim" in nifti.last["geometry_problems"][0]
    sound = cli("inspect", tmp_path / "in" / "non-orthonormal.nrrd", "--events")
    assert "not orthonormal" in sound.last["geometry_problems"][0]


@pytest.mark.parametrize("spacing", [(0.05, 0.05, 0.05), (20.0, 20.0, 20.0)])
def test_spacing_on_the_bounds_is_accepted(tmp_path, spacing):
    from VQSegCore.io import read_volume

    sitk.WriteImage(image(spacing=spacing), str(tmp_path / "edge.nrrd"))
    assert read_volume(tmp_path / "edge.nrrd").image.GetSpacing() == pytest.approx(spacing)
