"""`vqseg segment`: outputs on the input's exact grid, DICOM SEG for DICOM input, and every bad input → exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers.images import GEOMETRIES, make_image, write_dicom_series
from VQSegCore.infer import CodeStatistics, SegmentRequest, reference_from_volumes, segment_volume
from VQSegCore.model import VQSegConfig, build_model, save_model
from VQSegCore.model.config import PreprocessingConfig

CONFIG = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, preprocessing=PreprocessingConfig(spacing_mm=(1.5, 1.5)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "m"
    model = build_model(CONFIG).eval()
    save_model(model, folder, ood_reference=_reference(model, typical=True))
    return folder


@pytest.fixture(scope="module")
def suspicious_model_dir(tmp_path_factory) -> Path:
    """A model whose reference says training used one code only: every real input looks out of distribution."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "ood"
    save_model(build_model(CONFIG), folder, ood_reference=_reference(build_model(CONFIG), typical=False))
    return folder


def _reference(model, typical: bool) -> dict:
    """An OOD reference from volumes like the test inputs (typical), or from a model that used one code only."""
    if not typical:
        counts = np.eye(model.quantizer.codebook_size, dtype=np.int64)[-1] * 5000
        return reference_from_volumes([CodeStatistics(counts.copy()), CodeStatistics(counts.copy())])
    runs = [segment_volume(model, {}, make_image(GEOMETRIES["identity"], size=(20, 20, 4), seed=seed), SegmentRequest(device="cpu"))
            for seed in range(1, 5)]
    return reference_from_volumes([run.codes for run in runs])


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize(), a.GetSpacing(), a.GetOrigin(), a.GetDirection()) == (b.GetSize(), b.GetSpacing(), b.GetOrigin(), b.GetDirection())


def test_segment_writes_seg_nrrd_probabilities_and_uncertainty_on_the_input_grid(cli, tmp_path, model_dir):
    image = make_image(GEOMETRIES["oblique"], size=(30, 26, 7))
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    run = cli("segment", tmp_path / "ct.nrrd", "-o", tmp_path / "out.seg.nrrd", "--model-dir", model_dir,
              "--probabilities", tmp_path / "p.nii.gz", "--uncertainty", tmp_path / "u.nii.gz", "--events")
    assert run.returncode == 0, run.stderr
    result = run.last
    assert result["output"].endswith("out.seg.nrrd") and result["device"] == "cpu"
    assert set(result["timings_s"]) >= {"read", "preprocess", "infer", "resample_back", "write", "total"}
    assert result["classes"][0]["id"] == "lung_tumour" and result["classes"][0]["voxels"] >= 0
    assert result["ood"]["tokens"] > 0 and {"divergence", "expected", "excess", "threshold"} <= set(result["ood"])
    import slicerio

    segmentation = slicerio.read_segmentation(str(tmp_path / "out.seg.nrrd"))
    assert [s["id"] for s in segmentation["segments"]] == ["lung_tumour"]
    for name in ("p.nii.gz", "u.nii.gz"):
        written = sitk.ReadImage(str(tmp_path / name))
        assert written.GetSize() == image.GetSize()
        np.testing.assert_allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-5)  # NIfTI stores float32
    assert not list(tmp_path.glob(".vqseg-tmp-*"))


def test_nifti_label_map_keeps_the_geometry_bit_for_bit(cli, tmp_path, model_dir):
    image = make_image(GEOMETRIES["negative_axes"], size=(30, 26, 7))
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    run = cli("segment", tmp_path / "ct.nrrd", "-o", tmp_path / "out.nrrd", "--model-dir", model_dir, "--roi-ijk", "3", "4", "1", "20", "18", "5")
    assert run.returncode == 0, run.stderr
    labels = sitk.ReadImage(str(tmp_path / "out.nrrd"))
    assert _same_grid(labels, sitk.ReadImage(str(tmp_path / "ct.nrrd")))


def test_dicom_series_in_dicom_seg_out(cli, tmp_path, model_dir):
    image = make_image(GEOMETRIES["anisotropic_flipped_z"], size=(24, 20, 6))
    write_dicom_series(image, tmp_path / "series", "1.2.826.0.1.3680043.8.498.77")
    run = cli("segment", tmp_path / "series", "-o", tmp_path / "seg.dcm", "--model-dir", model_dir, "--events")
    assert run.returncode == 0, run.stderr
    seg = highdicom.seg.segread(str(tmp_path / "seg.dcm"))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.826.0.1.3680043.8.498.77"
    assert seg.SegmentSequence[0].SegmentLabel == "Lung tumour"
    assert "PatientName" not in json.dumps(run.last)


def test_ood_warning_is_reported_plainly(cli, tmp_path, model_dir, suspicious_model_dir):
    sitk.WriteImage(make_image(GEOMETRIES["identity"], size=(20, 20, 4), seed=7), str(tmp_path / "ct.nii.gz"))
    usual = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "a.nii.gz", "--model-dir", model_dir, "--events")
    assert usual.returncode == 0, usual.stderr
    assert usual.last["ood"]["warning"] is None  # like the volumes its reference came from
    run = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "out.nii.gz", "--model-dir", suspicious_model_dir, "--events")
    assert run.returncode == 0, run.stderr
    warnings = [e for e in run.events if e["event"] == "log" and e["level"] == "warning"]
    assert any("unlike the model's training data" in e["message"] for e in warnings)
    assert run.last["ood"]["warning"]


@pytest.mark.parametrize("extra, message", [
    (["--roi-lps", "900", "900", "900", "950", "950", "950"], "outside the image"),
    (["--max-memory-gb", "0.00001"], "GB"),
    (["--batch-size", "0"], "batch-size"),
    (["--window", "6"], "inference window"),
    (["--roi-lps", "-inf", "0", "0", "1", "1", "1"], "finite numbers"),
    (["--roi-lps", "5.2", "5", "1", "5.4", "9", "2"], "holds no voxel centre"),
    (["--roi-ras", "-1e3", "-1e3", "-1e3", "-9e2", "-9e2", "-9e2"], "outside the image"),
])
def test_bad_requests_exit_2_and_write_nothing(cli, tmp_path, model_dir, extra, message):
    sitk.WriteImage(make_image(GEOMETRIES["identity"], size=(20, 20, 4)), str(tmp_path / "ct.nii.gz"))
    run = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "out.nii.gz", "--model-dir", model_dir, *extra, "--events")
    assert run.returncode == 2, run.stderr
    assert message in run.last["message"]
    assert not (tmp_path / "out.nii.gz").exists() and not list(tmp_path.glob(".vqseg-tmp-*"))


def test_bad_inputs_exit_2(cli, tmp_path, model_dir):
    sitk.WriteImage(make_image(GEOMETRIES["identity"], size=(20, 20, 4)), str(tmp_path / "ct.nii.gz"))
    dicom_seg_from_nifti = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "x.dcm", "--model-dir", model_dir, "--events")
    assert dicom_seg_from_nifti.returncode == 2 and "DICOM series input" in dicom_seg_from_nifti.last["message"]
    no_model = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "x.nii.gz", "--model-dir", tmp_path, "--events")
    assert no_model.returncode == 2 and "card.json" in no_model.last["message"]
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("card.json", "weights.safetensors"):
        (tampered / name).write_bytes((model_dir / name).read_bytes())
    data = bytearray((tampered / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tampered / "weights.safetensors").write_bytes(bytes(data))
    run = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "x.nii.gz", "--model-dir", tampered, "--events")
    assert run.returncode == 2 and "do not match their card" in run.last["message"]
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b not really")
    run = cli("segment", tmp_path / "broken.nii.gz", "-o", tmp_path / "x.nii.gz", "--model-dir", model_dir, "--events")
    assert run.returncode == 2
    unknown = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "x.nii.gz", "--model", "no-such-model", "--events",
                  env={"VQSEG_HOME": str(tmp_path / "home")})
    assert unknown.returncode == 2 and "no-such-model" in unknown.last["message"]
    assert not list(tmp_path.glob("x.*"))


def test_dicom_seg_without_a_new_enough_pydicom_is_refused_before_any_work(monkeypatch):
    from importlib import metadata

    from VQSegCore.cli.commands import segment

    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "2.4.4" if name == "pydicom" else real(name))
    assert segment._dicom_seg_missing() == "pydicom >= 3.0.1; 2.4.4 is installed"
    monkeypatch.setattr(metadata, "version", real)
    assert segment._dicom_seg_missing() is None
