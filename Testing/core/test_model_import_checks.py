"""`models import` and `load_model` refuse what no VQSeg export holds, before building or reading it whole."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile

import pytest
import torch
from safetensors.torch import save as save_safetensors

from VQSegCore.errors import InputError
from VQSegCore.model import VQSegConfig, build_model, load_model
from VQSegCore.model.card_check import MAX_JSON_DEPTH
from VQSegCore.models import ModelStore

TINY = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16)


@pytest.fixture
def exported(tmp_path):
    """(card dict, weights bytes) of a real exported tiny model."""
    store = ModelStore(tmp_path / "source")
    torch.manual_seed(0)
    store.add_version("m", build_model(TINY))
    folder = store.path("m", "v0001")
    return json.loads((folder / "card.json").read_text()), (folder / "weights.safetensors").read_bytes()


def archive(path, members: dict[str, bytes], claimed: dict[str, int] | None = None):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    if claimed:  # rewrite a member's size field to claim more than it holds (a "tar bomb" header)
        raw = bytearray(path.read_bytes())
        for name, size in claimed.items():
            offset = raw.find(name.encode())
            raw[offset + 124:offset + 136] = f"{size:011o}\0".encode()
            header = raw[offset:offset + 512]
            header[148:156] = b" " * 8
            raw[offset + 148:offset + 156] = f"{sum(header):06o}\0 ".encode()
        path.write_bytes(bytes(raw))
    return path


def with_weights(card: dict, weights: bytes) -> dict[str, bytes]:
    card = {**card, "weights_sha256": hashlib.sha256(weights).hexdigest()}
    return {"card.json": json.dumps(card).encode(), "weights.safetensors": weights}


def state_bytes(card: dict, change) -> bytes:
    state = {k: v.clone() for k, v in build_model(TINY).state_dict().items()}
    change(state)
    return save_safetensors(state)


def bad_archives(tmp_path, card, weights) -> dict[str, tuple]:
    def config(**changes):
        return {**card, "config": {**card["config"], **changes}}

    nested = b'{"config": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    first = next(iter(build_model(TINY).state_dict()))
    cases = {
        "pickle named safetensors": (with_weights(card, pickle.dumps({"x": 1})), "not safetensors"),
        "malformed header": (with_weights(card, (2**40).to_bytes(8, "little") + b"{}"), "header length"),
        "header not JSON": (with_weights(card, (5).to_bytes(8, "little") + b"{{{{{" + b"\0" * 16), "header is not JSON"),
        "class value 256": (with_weights(config(classes=[{**card["config"]["classes"][0], "value": 256}]), weights), "invalid config"),
        "depth is text": (with_weights(config(unet_depth="four"), weights), "not a whole number"),
        "depth 50": (with_weights(config(unet_depth=50), weights), "outside 1..7"),
        "K = 1e9": (with_weights(config(codebook_size=10**9), weights), "outside 2..65536"),
        "width 1e6": (with_weights(config(unet_base_width=10**6), weights), "outside 1..256"),
        "spacing 1e-4": (with_weights(config(preprocessing={**card["config"]["preprocessing"], "spacing_mm": [1e-4, 1e-4]}), weights),
                         "spacing_mm"),
        "NaN weights": (with_weights(card, state_bytes(card, lambda s: s[first].fill_(float("nan")))), "NaN"),
        "integer weights": (with_weights(card, state_bytes(card, lambda s: s.update({first: s[first].to(torch.int32)}))), "not a float"),
        "wrong shape": (with_weights(card, state_bytes(card, lambda s: s.update({first: torch.zeros(3)}))), "shape"),
        "extra tensor": (with_weights(card, state_bytes(card, lambda s: s.update({"evil": torch.zeros(1)}))), "unexpected evil"),
        "nested card": ({"card.json": nested, "weights.safetensors": weights}, "nested"),
    }
    return {name: (archive(tmp_path / f"{i}.tar", members), phrase) for i, (name, (members, phrase)) in enumerate(cases.items())}


def test_each_hostile_archive_is_refused_and_the_store_is_unchanged(tmp_path, exported):
    card, weights = exported
    store = ModelStore(tmp_path / "target")
    for name, (path, phrase) in bad_archives(tmp_path, card, weights).items():
        with pytest.raises(InputError) as raised:
            store.import_version(path, "m")
        assert phrase in raised.value.message, (name, raised.value.message)
        assert raised.value.hint
    assert store.versions("m") == []


def test_a_real_export_still_imports(tmp_path, exported):
    card, weights = exported
    path = archive(tmp_path / "good.tar", with_weights(card, weights))
    store = ModelStore(tmp_path / "target")
    assert store.import_version(path, "m") == "v0001"
    model, _ = load_model(store.path("m", "v0001"))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_a_member_claiming_gigabytes_is_refused_before_it_is_read(tmp_path, exported):
    card, weights = exported
    members = with_weights(card, weights)
    for claim in (2**30 * 3, 2**30 * 30):
        path = archive(tmp_path / f"bomb{claim}.tar", members, claimed={"weights.safetensors": claim})
        with pytest.raises(InputError, match="claims|not a model archive"):
            ModelStore(tmp_path / "target").import_version(path, "m")


def test_an_oversized_card_is_refused_by_its_size_before_it_is_read(tmp_path, exported):
    card, weights = exported
    members = with_weights(card, weights)
    members["card.json"] = members["card.json"] + b" " * (17 * 2**20)  # valid JSON, 17 MB
    with pytest.raises(InputError, match="card.json claims 17 MB"):
        ModelStore(tmp_path / "target").import_version(archive(tmp_path / "big.tar", members), "m")


def test_load_model_checks_a_folder_changed_after_import(tmp_path, exported):
    """A card edited in place (with its weights' hash kept valid) is refused on load too."""
    card, weights = exported
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(weights)
    (folder / "card.json").write_text(json.dumps({**card, "config": {**card["config"], "codebook_size": 10**9}}))
    with pytest.raises(InputError, match="outside 2..65536"):
        load_model(folder)
    nan = state_bytes(card, lambda s: next(iter(s.values())).fill_(float("inf")))
    (folder / "weights.safetensors").write_bytes(nan)
    (folder / "card.json").write_text(json.dumps({**card, "weights_sha256": hashlib.sha256(nan).hexdigest()}))
    with pytest.raises(InputError, match="NaN or infinite"):
        load_model(folder)
    deep = {"config": card["config"], "x": json.loads("[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5))}
    (folder / "card.json").write_text(json.dumps(deep))
    with pytest.raises(InputError, match="nested"):
        load_model(folder)
