"""Inference in windows of the training crop (the field of view training saw), and one held-out scoring path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers.images import GEOMETRIES, make_image
from helpers.toydata import make_dataset
from VQSegCore.dataset_spec import DatasetSpec
from VQSegCore.errors import InputError
from VQSegCore.finetune import score_models
from VQSegCore.infer import SegmentRequest, SliceEngine, segment_volume
from VQSegCore.infer import segment as segment_module
from VQSegCore.infer.scoring import read_scored_case
from VQSegCore.model import VQSegConfig, build_model, load_model, save_model
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.train.loop import train, validate

SMALL = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, code_dim=8)  # size multiple 4: tokens 4x4 voxels
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(SMALL).eval()


def _engine(model, window, **kwargs) -> SliceEngine:
    return SliceEngine(model, CPU, precision="fp32", batch_size=2, window=window, **kwargs)


def _volume(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_a_window_the_size_of_the_slice_is_whole_slice_inference(model):
    volume = _volume((3, 32, 32))
    whole, windowed = _engine(model, 0).run(volume), _engine(model, 32).run(volume)
    np.testing.assert_allclose(windowed.probabilities, whole.probabilities, atol=1e-5)
    np.testing.assert_array_equal(windowed.codes.counts, whole.codes.counts)


def test_a_window_larger_than_the_slice_sees_it_padded_with_background_as_training_does(model):
    volume, background = _volume((2, 20, 28), seed=1), -0.5
    windowed = _engine(model, 32).run(volume, background=background).probabilities
    # training pads a slice smaller than its crop, centred, with the background: 32 - 20 = 6 + 6, 32 - 28 = 2 + 2
    padded = np.pad(volume, ((0, 0), (6, 6), (2, 2)), constant_values=background)
    expected = _engine(model, 0).run(padded, background=background).probabilities[:, :, 6:26, 2:30]
    assert windowed.shape == (2, 2, 20, 28)
    np.testing.assert_allclose(windowed, expected, atol=1e-5)
    # the background value matters: padding with 0 instead would change the answer
    assert not np.allclose(_engine(model, 32).run(volume, background=0.0).probabilities, windowed, atol=1e-4)


def test_a_slice_larger_than_the_window_goes_through_blended_windows(model):
    volume = _volume((2, 64, 48), seed=2)
    whole, windowed = _engine(model, 0).run(volume), _engine(model, 16).run(volume)
    assert windowed.probabilities.shape == (2, 2, 64, 48)
    np.testing.assert_allclose(windowed.probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert np.abs(windowed.probabilities - whole.probabilities).max() > 1e-3  # GroupNorm: the field of view matters
    # codes come from every window: (64-16)/8+1 = 7 by (48-16)/8+1 = 5 windows of 4x4 tokens, per slice
    assert whole.codes.tokens == 2 * 16 * 12
    assert windowed.codes.tokens == 2 * 7 * 5 * 16


def test_every_pass_of_sampled_uncertainty_sees_windows_only(model):
    sizes = []
    hook = model.register_forward_pre_hook(lambda module, args: sizes.append(tuple(args[0].shape[-2:])))
    try:
        out = _engine(model, 16).run(_volume((3, 40, 24), seed=3), uncertainty="samples")
    finally:
        hook.remove()
    assert set(sizes) == {(16, 16)} and len(sizes) >= 4  # plain, flipped and the QPM-perturbed passes
    np.testing.assert_allclose(out.probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert out.uncertainty.shape == (3, 40, 24) and 0.0 <= out.uncertainty.min() and out.uncertainty.max() <= 1.0 + 1e-6


def _counting_windows(model):
    batches = []
    return batches, model.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))


def test_a_field_skips_the_windows_outside_it_and_changes_nothing_inside(model):
    volume = _volume((2, 64, 48), seed=4)
    field = np.zeros(volume.shape, dtype=bool)
    field[:, 10:20, 6:14] = True  # a small lung near one corner
    batches, hook = _counting_windows(model)
    try:
        full = _engine(model, 16).run(volume)
        computed_full = sum(batches)
        batches.clear()
        skipping = _engine(model, 16).run(volume, field=field)
        computed_skipping = sum(batches)
    finally:
        hook.remove()
    np.testing.assert_allclose(skipping.probabilities[:, field], full.probabilities[:, field], atol=1e-6)
    # windows of 16 at stride 8: those starting at rows 0..16 and columns 0..8 touch the field: 3 x 2 per slice of 7 x 5
    assert computed_full == 2 * 7 * 5 and computed_skipping == 2 * 3 * 2
    far = np.zeros(volume.shape, dtype=bool)
    far[:, 48:, 32:] = True  # no window that touches the field reaches here: certain background
    assert skipping.probabilities[0][far].min() > 0.999 and skipping.codes.tokens == 2 * 3 * 2 * 16
    # flipped and perturbed passes skip alike; whole slices ignore the field
    sampled = _engine(model, 16).run(volume, field=field, uncertainty="samples")
    np.testing.assert_allclose(sampled.probabilities.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(_engine(model, 0).run(volume, field=field).probabilities, _engine(model, 0).run(volume).probabilities)
    with pytest.raises(ValueError, match="field shape"):
        _engine(model, 16).run(volume, field=field[:, :-1])


def test_the_engine_takes_the_models_window_unless_told_otherwise():
    config = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, code_dim=8, inference_window=24)
    net = build_model(config)
    assert SliceEngine(net, CPU, precision="fp32").window == 24
    assert SliceEngine(net, CPU, precision="fp32", window=0).window == 0
    assert SliceEngine(net, CPU, precision="fp32", window=8).window == 8
    with pytest.raises(ValueError, match="multiple of 4"):
        SliceEngine(net, CPU, precision="fp32", window=10)


def test_segment_request_window_reaches_the_engine_and_the_output_keeps_the_inputs_grid(model, monkeypatch):
    windows = []

    class Recording(SliceEngine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            windows.append(self.window)

    monkeypatch.setattr(segment_module, "SliceEngine", Recording)
    image = make_image(GEOMETRIES["oblique"], size=(40, 36, 5))
    results = [segment_volume(model, {}, image, SegmentRequest(device="cpu", window=w, probabilities=True)) for w in (None, 0, 16)]
    assert windows == [0, 0, 16]  # None: the model's own (0 for this model)
    for result in results:
        for output in (result.labels, result.probabilities):
            assert output.GetSize() == image.GetSize() and output.GetSpacing() == image.GetSpacing()
            assert output.GetOrigin() == image.GetOrigin() and output.GetDirection() == image.GetDirection()
    whole, windowed = (sitk.GetArrayViewFromImage(r.probabilities) for r in results[1:])
    assert np.abs(whole - windowed).max() > 1e-3
    with pytest.raises(InputError, match="window"):
        segment_volume(model, {}, image, SegmentRequest(device="cpu", window=6))


def test_segment_command_takes_a_window(cli, tmp_path):
    torch.manual_seed(0)
    save_model(build_model(VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, inference_window=8)), tmp_path / "m")
    sitk.WriteImage(make_image(GEOMETRIES["identity"], size=(24, 20, 3)), str(tmp_path / "ct.nii.gz"))
    outputs = {}
    for window in ("default", "0", "16"):
        extra = [] if window == "default" else ["--window", window]
        run = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / f"{window}.nii.gz", "--model-dir", tmp_path / "m",
                  "--probabilities", tmp_path / f"p{window}.nii.gz", *extra, "--events")
        assert run.returncode == 0, run.stderr
        outputs[window] = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"p{window}.nii.gz")))
    assert not np.allclose(outputs["default"], outputs["0"], atol=1e-4) and not np.allclose(outputs["16"], outputs["0"], atol=1e-4)


TINY = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, preprocessing=PreprocessingConfig(spacing_mm=(3.0, 3.0)))


def test_training_validation_scores_as_the_gate_and_the_model_infers_at_its_crop(tmp_path):
    spec = DatasetSpec.load(make_dataset(tmp_path / "data"))
    run = tmp_path / "run"
    summary = train(spec, TINY, run, iterations=2, validate_every=1, checkpoint_every=100, batch_size=2, crop_size=32, device="cpu")
    for folder in ("best", "last"):
        assert json.loads((run / folder / "card.json").read_text())["config"]["inference_window"] == 32
    best, card = load_model(run / "best")
    assert best.config.inference_window == 32
    (val_case,) = spec.labelled("val")
    gate = score_models({"candidate": run / "best"}, [val_case])["scores"]["candidate"]
    assert gate[val_case.id] == pytest.approx(card["metrics"]["val_per_case"][val_case.id], abs=1e-12)
    assert summary["best_val_dice"] == pytest.approx(gate[val_case.id], abs=1e-12)
    # validate() itself, on the loaded model, gives the same number, and leaves the model as it was
    weights = {k: v.clone() for k, v in best.state_dict().items()}
    scored = validate(best, [read_scored_case(val_case)], CPU)
    assert scored["per_case"] == gate and scored["mean_dice"] == pytest.approx(gate[val_case.id])
    assert all(torch.equal(weights[k], v) and v.is_contiguous() for k, v in best.state_dict().items())


def test_a_window_chosen_by_the_caller_is_kept(tmp_path):
    spec = DatasetSpec.load(make_dataset(tmp_path / "data", (("a", "train", True),)))
    config = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, inference_window=16,
                         preprocessing=PreprocessingConfig(spacing_mm=(3.0, 3.0)))
    train(spec, config, tmp_path / "run", iterations=1, batch_size=2, crop_size=32, device="cpu", supervised_only=True)
    assert load_model(tmp_path / "run" / "last")[0].config.inference_window == 16
