"""Check a model card and its weights before anything is built from them (on import and on load).

    card = parse_card(data, where)                   # JSON object, size and nesting bounded
    config = config_from_card(card, where)           # a VQSegConfig inside sane bounds
    state = check_weights(weights, config, where)    # safetensors whose names, shapes and dtypes fit, all finite

A model archive can come from anyone. Every failure is an InputError naming what is wrong; no
pickle is ever read (safetensors holds raw tensors only) and no size a file claims is trusted before
it is checked, so a crafted card or header cannot exhaust memory.
"""

from __future__ import annotations

import json
import math

import torch
from safetensors.torch import load as load_safetensors

from VQSegCore.errors import InputError
from VQSegCore.model.config import VQSegConfig

MAX_CARD_BYTES = 16 * 2**20  # a card with an OOD reference is ~100 KB
MAX_WEIGHTS_BYTES = 2 * 2**30  # the largest shipped configuration is ~100 MB
MAX_HEADER_BYTES = 16 * 2**20
MAX_JSON_DEPTH = 32
# Integer fields and their sane ranges: far beyond any real model, far below what exhausts memory.
INTEGER_BOUNDS = {
    "unet_base_width": (1, 256), "unet_depth": (1, 7), "codebook_size": (2, 65536), "code_dim": (1, 4096),
    "vit_embed_dim": (1, 4096), "vit_depth": (1, 48), "vit_heads": (1, 64), "vit_patch_size": (1, 64),
    "vit_pos_grid": (1, 256), "dpt_features": (1, 1024), "pfa_feature_dim": (0, 4096), "inference_window": (0, 4096),
    "qpm_median_sample": (2, 1 << 20),
}
PREPROCESSING_BOUNDS = {"context_slices": (0, 8)}
SPACING_BOUNDS_MM = (0.05, 20.0)  # as images (VQSegCore.io.geometry)
_FLOAT_DTYPES = {"F32", "F16", "BF16", "F64"}
_INTEGER_DTYPES = {"I64", "I32", "I16", "I8", "U8"}  # e.g. BatchNorm's num_batches_tracked


def parse_card(data: bytes, where: str) -> dict:
    """The card as a dict; InputError when it is too large, not JSON, nested absurdly deep or not an object."""
    if len(data) > MAX_CARD_BYTES:
        raise _damaged(where, f"card.json is {len(data) / 2**20:.0f} MB (at most {MAX_CARD_BYTES // 2**20} MB)")
    try:
        card = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise _damaged(where, f"card.json is not valid JSON ({problem})") from problem
    except RecursionError as problem:
        raise _damaged(where, "card.json is nested too deeply") from problem
    if _depth(card) > MAX_JSON_DEPTH:
        raise _damaged(where, f"card.json is nested more than {MAX_JSON_DEPTH} levels deep")
    if not isinstance(card, dict):
        raise _damaged(where, "card.json is not a JSON object")
    return card


def config_from_card(card: dict, where: str) -> VQSegConfig:
    """The card's config, with every number typed and inside INTEGER_BOUNDS / the spacing bounds."""
    data = card.get("config")
    if not isinstance(data, dict):
        raise _damaged(where, "card.json holds no config object")
    problems = _bound_problems(data, INTEGER_BOUNDS)
    preprocessing = data.get("preprocessing", {})
    if isinstance(preprocessing, dict):
        problems += _bound_problems(preprocessing, PREPROCESSING_BOUNDS)
        spacing = preprocessing.get("spacing_mm")
        if spacing is not None and not (isinstance(spacing, list) and len(spacing) == 2 and all(
                _is_number(s) and SPACING_BOUNDS_MM[0] <= s <= SPACING_BOUNDS_MM[1] for s in spacing)):
            problems.append(f"preprocessing.spacing_mm {spacing!r} is not two numbers in {SPACING_BOUNDS_MM[0]}–{SPACING_BOUNDS_MM[1]} mm")
    for name, value in data.items():
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{name} is {value}")
    if problems:
        raise _damaged(where, "card.json holds an invalid config: " + "; ".join(problems))
    try:
        return VQSegConfig.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as problem:
        raise _damaged(where, f"card.json holds an invalid config: {problem}") from problem


def check_weights(weights: bytes, config: VQSegConfig, where: str) -> dict[str, torch.Tensor]:
    """The state dict in `weights`, when its tensors are exactly the network's (names, shapes, and float
    where the network's are float, integer where they are integer) and every float value is finite;
    InputError otherwise."""
    header = _safetensors_header(weights, where)
    expected = _expected_state(config)
    found = {name: entry for name, entry in header.items() if name != "__metadata__"}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise _damaged(where, "the weights do not fit the card's network: "
                       + ", ".join(filter(None, [f"missing {_few(missing)}" if missing else "", f"unexpected {_few(extra)}" if extra else ""])))
    for name, (shape, dtype) in expected.items():
        entry = found[name]
        allowed = _FLOAT_DTYPES if dtype.is_floating_point else _INTEGER_DTYPES
        if not isinstance(entry, dict) or entry.get("dtype") not in allowed:
            kind = "a float type" if dtype.is_floating_point else "an integer type"
            raise _damaged(where, f"tensor {name} has dtype {entry.get('dtype') if isinstance(entry, dict) else entry!r}, not {kind}")
        if list(entry.get("shape", [])) != list(shape):
            raise _damaged(where, f"tensor {name} has shape {entry.get('shape')}, the network needs {list(shape)}")
    try:
        state = load_safetensors(weights)
    except Exception as problem:  # safetensors raises its own error types on malformed data
        raise _damaged(where, f"the weights file is malformed ({problem})") from problem
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise _damaged(where, f"tensor {name} holds NaN or infinite values")
    return state


def _safetensors_header(weights: bytes, where: str) -> dict:
    if len(weights) < 8:
        raise _damaged(where, "the weights file is not safetensors (too short)")
    length = int.from_bytes(weights[:8], "little")
    if length > min(MAX_HEADER_BYTES, len(weights) - 8):
        raise _damaged(where, "the weights file is not safetensors (its header length is impossible)")
    try:
        header = json.loads(weights[8:8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as problem:
        raise _damaged(where, "the weights file is not safetensors (its header is not JSON)") from problem
    if not isinstance(header, dict):
        raise _damaged(where, "the weights file is not safetensors (its header is not an object)")
    return header


def _expected_state(config: VQSegConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of the network's state, from a model built without memory (meta device)."""
    from VQSegCore.model.build import build_model

    with torch.device("meta"):
        model = build_model(config)
    return {name: (tuple(tensor.shape), tensor.dtype) for name, tensor in model.state_dict().items()}


def _bound_problems(data: dict, bounds: dict) -> list[str]:
    problems = []
    for name, (low, high) in bounds.items():
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{name} is {value!r}, not a whole number")
        elif not low <= value <= high:
            problems.append(f"{name} {value} is outside {low}..{high}")
    return problems


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _depth(value, limit: int = MAX_JSON_DEPTH + 1) -> int:
    """Nesting depth of parsed JSON, counted without recursion (stops counting past `limit`)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest >= limit:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _damaged(where: str, what: str) -> InputError:
    return InputError(f"{where}: {what}", "the model is damaged or not a VQSeg model; export or train it again")
