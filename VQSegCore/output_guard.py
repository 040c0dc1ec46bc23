"""Refuse an output path that would destroy an input or VQSeg's own data.

    check_outputs([args.output, args.uncertainty], inputs=[args.input, model_folder])

A command calls this before any work, for every file or folder it will write. It refuses (InputError,
exit 2):
- an output that is one of the inputs (same resolved path, or the same file through a link), or lies
  inside an input folder (a DICOM series, a model folder);
- two outputs that are the same file;
- an output inside a pool (a folder holding pool.json), a model folder (card.json + weights), a model
  store (a model's `active` pointer or activation log; $VQSEG_HOME/models and /pools as a whole) or the
  shipped models. Those are written only by the pool and store commands, through their own locks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from VQSegCore.errors import InputError
from VQSegCore.paths import models_dir, pools_dir, repository_root

# What each kind of folder holds, named here rather than imported (the pool and store modules pull in
# torch). A folder counts only with its whole structure, so a stray file named `active` or
# `pool.json` somewhere above a user's output protects nothing by mistake.
_MODEL_FOLDER_MARKERS = ("card.json", "weights.safetensors")
_STORE_POINTERS = ("active", "activations.jsonl")
_VERSION_NAME = re.compile(r"^v\d{4,}$")


def check_outputs(outputs: Iterable[str | os.PathLike | None], inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """InputError for the first output that would overwrite an input, another output or VQSeg's data."""
    wanted = [Path(p).expanduser() for p in outputs if p is not None]
    sources = [Path(p).expanduser() for p in inputs if p is not None]
    seen: dict[Path, Path] = {}
    for output in wanted:
        resolved = _resolved(output)
        if resolved in seen:
            raise InputError(f"{seen[resolved]} and {output} are the same file", "give each output its own path")
        seen[resolved] = output
        for source in sources:
            _refuse_if_input(output, resolved, source)
        owner = vqseg_data_owner(resolved)
        if owner:
            raise InputError(f"cannot write {output}: it lies inside {owner}, which only VQSeg's own commands may change",
                             "write the output somewhere else (e.g. your working folder)")


def vqseg_data_owner(path: Path) -> str | None:
    """A description of the pool, model or store that `path` (resolved) lies in, or None."""
    protected = {_resolved(models_dir()): "the model store", _resolved(pools_dir()): "the pools folder",
                 _resolved(repository_root() / "Resources" / "Models"): "the shipped models"}
    for folder in (path, *path.parents):
        if folder in protected:
            return f"{protected[folder]} ({folder})"
        if folder == path and not folder.is_dir():
            continue
        if (folder / "pool.json").is_file() and (folder / "cases").is_dir():
            return f"the pool {folder}"
        if all((folder / name).is_file() for name in _MODEL_FOLDER_MARKERS):
            return f"the model folder {folder}"
        if any((folder / name).is_file() for name in _STORE_POINTERS) and _holds_versions(folder):
            return f"the model store folder {folder}"
    return None


def _holds_versions(folder: Path) -> bool:
    """Whether `folder` holds a model version (v0001/ with its card), as a model's folder in the store does."""
    try:
        return any(_VERSION_NAME.match(child.name) and (child / "card.json").is_file() for child in folder.iterdir())
    except OSError:
        return False


def _refuse_if_input(output: Path, resolved: Path, source: Path) -> None:
    source_resolved = _resolved(source)
    same = resolved == source_resolved
    if not same and output.exists() and source.exists():
        try:
            same = os.path.samefile(output, source)
        except OSError:
            same = False
    if same:
        raise InputError(f"cannot write {output}: it is the input {source}, which writing would destroy",
                         "give the output another file name")
    # A DICOM slice given as the input stands for its whole series, which is read from its folder.
    folder = source_resolved if source_resolved.is_dir() else source_resolved.parent if source_resolved.suffix.lower() == ".dcm" else None
    if folder is not None and folder in resolved.parents:
        raise InputError(f"cannot write {output}: it lies inside the input folder {folder}",
                         "write the output outside the input's folder")


def _resolved(path: Path) -> Path:
    """The absolute path with links resolved as far as they exist (a loop is the user's error)."""
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError as loop:  # Python < 3.13 raises RuntimeError on a symlink loop
        raise InputError(f"{path}: a symbolic link loop", "fix the link or give another path") from loop
    except OSError as problem:
        raise InputError(f"{path}: {problem.strerror or problem}", "fix the path") from problem
