"""Save and load a model as `weights.safetensors` + `card.json` (never a pickle).

The card holds the config (architecture, preprocessing, classes) and the sha256 of the weights
file; loading refuses weights whose hash differs, so a tampered or truncated file never runs.
Both files are written atomically; the weights first, so a card never names missing weights.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path

from safetensors.torch import save as save_safetensors

from VQSegCore import __version__
from VQSegCore.atomic import write_bytes_atomic, write_json_atomic
from VQSegCore.errors import InputError
from VQSegCore.model.card_check import MAX_CARD_BYTES, MAX_WEIGHTS_BYTES, check_weights, config_from_card, parse_card

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"


def save_model(
    model,
    folder: str | os.PathLike,
    *,
    training: dict | None = None,
    metrics: dict | None = None,
    parent: str | None = None,
    ood_reference: dict | None = None,
) -> Path:
    """Write `folder`/weights.safetensors and `folder`/card.json; return the folder.

    `ood_reference`: the training volumes' code-usage statistics (VQSegCore.infer.ood).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    weights = save_safetensors(state, metadata={"format_version": str(FORMAT_VERSION)})
    write_bytes_atomic(folder / WEIGHTS_FILE, weights)
    card = {
        "format_version": FORMAT_VERSION,
        "software_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "config": model.config.to_dict(),
        "training": training or {},
        "metrics": metrics or {},
        "parent": parent,
        "ood_reference": ood_reference,
    }
    write_json_atomic(folder / CARD_FILE, card)
    return folder


def read_card(folder: str | os.PathLike) -> dict:
    """The model card, checked for format; raises InputError on anything a user must fix."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise InputError(f"model card not found: {path}", "point at a model folder holding card.json and weights.safetensors")
    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            raise InputError(f"model card {path} is {path.stat().st_size / 2**20:.0f} MB, not a model card", "restore the model folder from a good copy")
        card = parse_card(path.read_bytes(), str(Path(folder)))
    except OSError as error:
        raise InputError(f"model card {path} cannot be read: {error.strerror or error}", "restore the model folder from a good copy") from error
    return read_card_fields(card, str(path))


def read_card_fields(card: dict, where: str) -> dict:
    """`card` when it has its config, weights hash and a format version this code reads."""
    if not isinstance(card.get("config"), dict) or "weights_sha256" not in card:
        raise InputError(f"model card {where} lacks its config or weights hash", "restore the model folder from a good copy")
    version = card.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"model card {where} has no valid format_version", "restore the model folder from a good copy")
    if version > FORMAT_VERSION:
        raise InputError(
            f"model card {where} has format_version {version}; this VQSegCore {__version__} reads up to {FORMAT_VERSION}",
            "update VQSegCore to load this model",
        )
    return card


def load_model(folder: str | os.PathLike, *, device: str = "cpu"):
    """Rebuild the model from its card and load the verified weights; returns (model, card).

    The model is returned in eval mode.
    """
    from VQSegCore.model.build import build_model

    folder = Path(folder)
    card = read_card(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise InputError(f"weights file not found: {weights_path}", "the model folder is incomplete; restore it")
    if weights_path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise InputError(f"weights {weights_path} are {weights_path.stat().st_size / 2**30:.1f} GB, more than any VQSeg model",
                         "restore the model folder from a good copy")
    weights = weights_path.read_bytes()
    digest = hashlib.sha256(weights).hexdigest()
    if digest != card["weights_sha256"]:
        raise InputError(
            f"weights {weights_path} do not match their card (sha256 {digest[:16]}…, card says {str(card['weights_sha256'])[:16]}…)",
            "the file was changed or damaged; restore the model folder from a good copy",
        )
    config = config_from_card(card, str(folder))
    state = check_weights(weights, config, str(folder))
    model = build_model(config)
    try:
        model.load_state_dict(state, strict=True)
    except Exception as error:  # hash matched, so this is a card/weights mismatch made by a tool
        raise InputError(f"weights {weights_path} do not fit the architecture in the card: {error}", "restore the model folder") from error
    return model.to(device).eval(), card
