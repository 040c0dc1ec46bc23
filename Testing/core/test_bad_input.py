"""Every kind of unusable input gives one InputError that names the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.badfiles import CASES, bad_inputs, written
from helpers.images import GEOMETRIES, make_image
from VQSegCore.errors import InputError
from VQSegCore.io import read_volume


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_one_clear_error(tmp_path, case):
    path, phrase = bad_inputs(tmp_path)[case]
    with pytest.raises(InputError) as caught:
        read_volume(path)
    assert str(path) in caught.value.message
    assert phrase in caught.value.message
    assert caught.value.hint


def test_truncated_nifti_is_caught_even_when_only_the_last_bytes_are_missing(tmp_path):
    path = written(tmp_path, "almost.nii")
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(InputError, match="truncated"):
        read_volume(path)


def test_corrupted_gzip_payload_is_caught(tmp_path):
    path = written(tmp_path, "flipped.nii.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_volume(path)


def test_intact_files_of_every_format_read(tmp_path):
    image = make_image(GEOMETRIES["negative_axes"], size=(10, 9, 8))
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        volume = read_volume(written(tmp_path, f"ok{suffix}", image))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), sitk.GetArrayFromImage(image))


def test_header_geometry_faults_and_link_loops_get_their_own_message(tmp_path):
    from VQSegCore.io import read_volume

    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    sitk.WriteImage(image, str(tmp_path / "plain.nrrd"))
    text = (tmp_path / "plain.nrrd").read_bytes()
    for name, directions, phrase in (("zero.nrrd", b"(0,0,0) (0,1,0) (0,0,1)", "spacing"),
                                     ("singular.nrrd", b"(1,0,0) (1,0,0) (0,0,1)", "singular")):
        (tmp_path / name).write_bytes(text.replace(b"(1,0,0) (0,1,0) (0,0,1)", directions))
        with pytest.raises(InputError, match=phrase) as raised:
            read_volume(tmp_path / name)
        assert "truncated or corrupt" not in raised.value.message
    (tmp_path / "loop.nrrd").symlink_to(tmp_path / "loop.nrrd")
    with pytest.raises(InputError, match="loop of links"):
        read_volume(tmp_path / "loop.nrrd")


def test_an_nrrd_header_error_names_its_cause(tmp_path):
    from VQSegCore.io import read_volume

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(tmp_path / "plain.nrrd"))
    (tmp_path / "bad.nrrd").write_bytes((tmp_path / "plain.nrrd").read_bytes().replace(b"type: short", b"type: foo"))
    with pytest.raises(InputError, match='parse type "foo"'):
        read_volume(tmp_path / "bad.nrrd")


def test_a_nii_gz_beside_a_nii_of_the_same_name_is_read_as_itself(tmp_path, monkeypatch):
    """ITK, given x.nii.gz, reads the voxels of a sibling x.nii: the reader must not."""
    from VQSegCore.io import read as read_module

    ours, sibling = np.zeros((4, 5, 6), np.int16), np.full((4, 5, 6), 7, np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(ours), str(tmp_path / "x.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(sibling), str(tmp_path / "x.nii"))
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "x.nii.gz"))).max() == 7  # ITK's own behaviour
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_volume(tmp_path / "x.nii.gz").image), ours)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_volume(tmp_path / "x.nii").image), sibling)
    # where links are not allowed (Windows without the privilege) a private copy is read
    monkeypatch.setattr(read_module.os, "symlink", lambda *a, **k: (_ for _ in ()).throw(OSError("not allowed")))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_volume(tmp_path / "x.nii.gz").image), ours)
