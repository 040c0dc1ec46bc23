"""DINOv2 ViT-S/14 weights from a local file: never downloaded, never unpickled.

Accepted files: Meta's `dinov2_vits14_pretrain.pth` (read with `torch.load(weights_only=True)`)
or a safetensors file with the same names (e.g. timm's `vit_small_patch14_dinov2.lvd142m`
`model.safetensors`, which lacks only the unused `mask_token`). `find_dinov2_weights()` looks in
the user's own caches: $TORCH_HOME/hub/checkpoints (torch.hub) and the Hugging Face hub cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from VQSegCore.errors import InputError
from VQSegCore.model.vit_dinov2 import DinoV2ViT

TORCH_HUB_FILE = "dinov2_vits14_pretrain.pth"
HF_REPOS = ("models--timm--vit_small_patch14_dinov2.lvd142m", "models--timm--vit_small_patch14_dinov2")


def dinov2_cache_candidates() -> list[Path]:
    """Where a previously downloaded ViT-S/14 checkpoint may already be on this machine."""
    torch_home = Path(os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch")
    candidates = [torch_home / "hub" / "checkpoints" / TORCH_HUB_FILE]
    hf_home = Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or hf_home / "hub")
    for repo in HF_REPOS:
        candidates.extend(sorted((hub / repo / "snapshots").glob("*/model.safetensors")))
    return candidates


def find_dinov2_weights() -> Path | None:
    """The first existing cached checkpoint, or None (nothing is downloaded)."""
    return next((path for path in dinov2_cache_candidates() if path.is_file()), None)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a .safetensors file, or of a .pth/.pt file via torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}", "give the path of a local DINOv2 ViT-S/14 checkpoint")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt or foreign file: the user picked the wrong one
        raise InputError(f"cannot read weights {path}: {error}", "use a .safetensors or a plain-tensor .pth file") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(f"{path} does not hold a flat dictionary of tensors", "use the ViT checkpoint itself")
    return state


def load_dinov2_weights(vit: DinoV2ViT, path: str | os.PathLike) -> None:
    """Load a ViT-S/14 checkpoint into `vit` with strict=True (only `mask_token` may be absent)."""
    state = read_state_dict(path)
    state.setdefault("mask_token", torch.zeros_like(vit.mask_token))
    expected = vit.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        raise InputError(
            f"{path} is not a DINOv2 ViT-S/14 checkpoint for this model: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong_shape[:5]}",
            "use dinov2_vits14_pretrain.pth or timm's vit_small_patch14_dinov2 safetensors",
        )
    vit.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
