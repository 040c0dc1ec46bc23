"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a folder `checkpoint/` holding
    student.safetensors, teacher.safetensors      model state dicts
    optimiser.safetensors                          every tensor of the optimiser state ("state.<param>.<key>")
    state.json                                     iteration, optimiser param groups and scalar state,
                                                   numpy bit-generator state, extra (best Dice, ...)
    rng.safetensors                                torch generator + global CPU RNG states (uint8)
It is written to a temporary sibling folder and renamed into place, so a crash never leaves a
half-written checkpoint; the previous one is kept as `checkpoint.old` until the new one is in place.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_DIR = "checkpoint"
FORMAT_VERSION = 1


@dataclass
class TrainingState:
    iteration: int
    extra: dict = field(default_factory=dict)  # best Dice, elapsed time: what the loop stored beside the weights


def _state_dict_cpu(module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}


def _optimiser_split(optimiser: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimiser.state_dict()
    tensors, scalars = {}, {}
    for param_id, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimiser_join(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = tensor
    for param_id, values in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def save_checkpoint(out_dir: str | os.PathLike, *, student, teacher, optimiser, iteration: int,
                    rng: np.random.Generator, generator: torch.Generator, extra: dict | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / CHECKPOINT_DIR
    temp = out_dir / f".vqseg-tmp-{uuid.uuid4().hex[:12]}-{CHECKPOINT_DIR}"
    old = out_dir / f"{CHECKPOINT_DIR}.old"
    temp.mkdir()
    try:
        save_file(_state_dict_cpu(student), str(temp / "student.safetensors"))
        save_file(_state_dict_cpu(teacher), str(temp / "teacher.safetensors"))
        opt_tensors, opt_meta = _optimiser_split(optimiser)
        save_file(opt_tensors, str(temp / "optimiser.safetensors"))
        save_file({"generator": generator.get_state().contiguous(), "global": torch.get_rng_state().contiguous()},
                  str(temp / "rng.safetensors"))
        state = {
            "format_version": FORMAT_VERSION,
            "iteration": iteration,
            "optimiser": opt_meta,
            "numpy_bit_generator": rng.bit_generator.state,
            "extra": extra or {},
        }
        (temp / "state.json").write_text(json.dumps(state, default=_json_default), encoding="utf-8")
        for path in temp.iterdir():
            with open(path, "rb") as stream:
                os.fsync(stream.fileno())
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(temp, target)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def checkpoint_folder(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint folder of a run (or the kept previous one), None when there is none."""
    out_dir = Path(out_dir)
    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"):
        folder = out_dir / name
        if (folder / "state.json").is_file():
            return folder
    return None


def load_checkpoint(out_dir: str | os.PathLike, *, student, teacher, optimiser, rng: np.random.Generator,
                    generator: torch.Generator) -> TrainingState:
    """Restore weights, optimiser and RNG states in place; returns the iteration and extra info."""
    folder = checkpoint_folder(out_dir)
    if folder is None:
        raise FileNotFoundError(f"no checkpoint in {out_dir}")
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    device = next(student.parameters()).device
    student.load_state_dict(load_file(str(folder / "student.safetensors"), device=str(device)))
    teacher.load_state_dict(load_file(str(folder / "teacher.safetensors"), device=str(device)))
    optimiser.load_state_dict(_optimiser_join(load_file(str(folder / "optimiser.safetensors"), device=str(device)), state["optimiser"]))
    rng.bit_generator.state = state["numpy_bit_generator"]
    rng_tensors = load_file(str(folder / "rng.safetensors"))
    generator.set_state(rng_tensors["generator"])
    torch.set_rng_state(rng_tensors["global"])
    return TrainingState(state["iteration"], state.get("extra", {}))
