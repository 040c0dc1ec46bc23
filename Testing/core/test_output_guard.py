"""check_outputs: which output paths are refused, and which are not."""

from __future__ import annotations

import pytest

from VQSegCore.errors import InputError
from VQSegCore.output_guard import check_outputs, vqseg_data_owner


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VQSEG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_an_ordinary_output_beside_the_input_passes(tmp_path, home):
    (tmp_path / "ct.nii.gz").write_bytes(b"x")
    check_outputs([tmp_path / "label.nii.gz", tmp_path / "sub" / "u.nii.gz"], inputs=[tmp_path / "ct.nii.gz"])


def test_the_input_itself_and_a_path_that_resolves_to_it_are_refused(tmp_path, home):
    (tmp_path / "ct.nii.gz").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    for output in (tmp_path / "ct.nii.gz", tmp_path / "sub" / ".." / "ct.nii.gz"):
        with pytest.raises(InputError, match="it is the input"):
            check_outputs([output], inputs=[tmp_path / "ct.nii.gz"])


def test_duplicate_outputs_are_refused(tmp_path, home):
    with pytest.raises(InputError, match="same file"):
        check_outputs([tmp_path / "a.nii.gz", tmp_path / "." / "a.nii.gz"])


@pytest.mark.parametrize("layout, output, owner", [
    ({"p/pool.json": "{}", "p/cases/.keep": ""}, "p/cases/out.nii.gz", "the pool"),
    ({"p/pool.json": "{}", "p/cases/.keep": ""}, "p/pool.json", "the pool"),
    ({"m/card.json": "{}", "m/weights.safetensors": ""}, "m/weights.safetensors", "the model folder"),
    ({"s/lung/active": "v0001", "s/lung/v0001/card.json": "{}"}, "s/lung/active", "the model store folder"),
    ({"s/lung/activations.jsonl": "", "s/lung/v0002/card.json": "{}"}, "s/lung/v0009/x.tar", "the model store folder"),
])
def test_vqseg_data_is_protected_wherever_it_lies(tmp_path, home, layout, output, owner):
    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert vqseg_data_owner((tmp_path / output).resolve()).startswith(owner)
    with pytest.raises(InputError, match="only VQSeg's own commands"):
        check_outputs([tmp_path / output])


def test_stray_files_with_marker_names_protect_nothing(tmp_path, home):
    """A file called `active`, `store.json` or `pool.json` above an output (e.g. in /tmp) is not a store or a pool."""
    for name in ("active", "store.json", "activations.jsonl", "pool.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / "VQSeg-run").mkdir()
    check_outputs([tmp_path / "VQSeg-run" / "label.nii.gz"])
    assert vqseg_data_owner((tmp_path / "VQSeg-run" / "label.nii.gz").resolve()) is None


def test_a_dicom_slice_input_protects_its_whole_series_folder(tmp_path, home):
    (tmp_path / "series").mkdir()
    for k in range(3):
        (tmp_path / "series" / f"IM{k}.dcm").write_bytes(b"")
    with pytest.raises(InputError, match="inside the input folder"):
        check_outputs([tmp_path / "series" / "IM2.dcm"], inputs=[tmp_path / "series" / "IM0.dcm"])
    check_outputs([tmp_path / "seg.dcm"], inputs=[tmp_path / "series" / "IM0.dcm"])


def test_the_home_folders_are_protected_even_when_empty(tmp_path, home):
    for output in (home / "models" / "a.tar", home / "pools" / "new" / "spec.json"):
        with pytest.raises(InputError, match="model store|pools folder"):
            check_outputs([output])
    check_outputs([home / "elsewhere.json"])


def test_a_symlink_loop_is_a_clear_error(tmp_path, home):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(InputError, match="link loop|loop"):
        check_outputs([tmp_path / "loop" / "x.nii.gz"])
