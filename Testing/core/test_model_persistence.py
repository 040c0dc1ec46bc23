"""Config JSON round trip; save -> load reproduces outputs bit for bit; damaged folders are refused."""

from __future__ import annotations

import json

import pytest
import torch

from VQSegCore import __version__
from VQSegCore.errors import InputError
from VQSegCore.model import PreprocessingConfig, VQSegConfig, build_model, load_model, read_card, save_model
from VQSegCore.model.persistence import CARD_FILE, WEIGHTS_FILE

TINY = dict(unet_base_width=8, unet_depth=3, codebook_size=64, pfa_model="random", pfa_feature_dim=16)


def test_config_round_trips_through_json():
    config = VQSegConfig(
        backbone="vit_dinov2",
        vit_depth=4,
        vit_taps=(0, 1, 2, 3),
        perturbation="dropout",
        preprocessing=PreprocessingConfig(modality="mri", spacing_mm=(1.5, 1.5), context_slices=1),
    )
    again = VQSegConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.in_channels == 3 and again.num_classes == 2
    assert again.resolved().codebook_size == 16384 and again.resolved().code_dim == 384


def test_config_rejects_unknown_fields_and_bad_values():
    with pytest.raises(ValueError, match="unknown model config field"):
        VQSegConfig.from_dict({"backbone": "unet", "colour": "red"})
    with pytest.raises(ValueError, match="perturbation"):
        VQSegConfig(perturbation="shuffle")
    with pytest.raises(ValueError, match="qpm_epsilon"):
        VQSegConfig(qpm_epsilon=1.5)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(VQSegConfig(**TINY)).eval()
    folder = save_model(model, tmp_path / "v0001", training={"iterations": 3}, metrics={"dice": 0.5}, parent="v0000")
    return model, folder


def test_save_load_reproduces_outputs_bit_for_bit(saved):
    model, folder = saved
    images = torch.rand(2, 1, 32, 32)
    loaded, card = load_model(folder)
    assert not loaded.training
    with torch.no_grad():
        before, after = model(images, pfa_grid=(4, 4)), loaded(images, pfa_grid=(4, 4))
    for name in ("logits", "reconstruction", "indices", "quantization_distance", "pfa_features"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    assert loaded.config == model.config


def test_card_holds_provenance(saved):
    _, folder = saved
    card = read_card(folder)
    assert card["format_version"] == 1
    assert card["software_version"] == __version__
    assert card["created"].endswith("+00:00")
    assert len(card["weights_sha256"]) == 64
    assert card["training"] == {"iterations": 3} and card["metrics"] == {"dice": 0.5} and card["parent"] == "v0000"
    assert card["config"]["codebook_size"] == 64  # resolved, never "backbone default"
    assert sorted(p.name for p in folder.iterdir()) == [CARD_FILE, WEIGHTS_FILE]  # no temporaries left


def test_tampered_weights_are_refused(saved):
    _, folder = saved
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[-10] ^= 0x01  # one bit in the last tensor's data
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(InputError, match="do not match their card"):
        load_model(folder)


def test_missing_files_are_refused(saved):
    _, folder = saved
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(InputError, match="weights file not found"):
        load_model(folder)
    (folder / CARD_FILE).unlink()
    with pytest.raises(InputError, match="model card not found"):
        load_model(folder)


def test_invalid_or_newer_cards_are_refused(saved):
    _, folder = saved
    card_path = folder / CARD_FILE
    card = json.loads(card_path.read_text())
    card_path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_model(folder)
    card_path.write_text(json.dumps({**card, "format_version": 99}))
    with pytest.raises(InputError, match="format_version 99"):
        load_model(folder)
    card_path.write_text(json.dumps({**card, "config": {**card["config"], "backbone": "resnet"}}))
    with pytest.raises(InputError, match="invalid config"):
        load_model(folder)
