"""Find a model folder from what the user typed: a folder, NAME, or NAME@VERSION.

    folder = locate_model("lung-lesion@v0003")      # $VQSEG_HOME/models/lung-lesion/v0003
    folder = locate_model("lung-lesion")            # its active version, else the shipped default
    folder = locate_model(None)                     # the default model

Store layout (docs/architecture.md §3.5): `$VQSEG_HOME/models/<name>/v0001/` … with an `active` file naming the
version in use. Shipped defaults: `Resources/Models/<name>/` (read-only, no versions).
"""

from __future__ import annotations

from pathlib import Path

from VQSegCore.errors import InputError
from VQSegCore.model_names import SHIPPED, is_version_name, split_model_spec
from VQSegCore.paths import models_dir, repository_root

DEFAULT_MODEL_NAME = "lung-lesion"
ACTIVE_FILE = "active"


def shipped_models_dir() -> Path:
    return repository_root() / "Resources" / "Models"


def read_active_pointer(pointer: Path, name: str) -> str | None:
    """The version an `active` file names (None when empty); InputError when it is not a version name."""
    try:
        version = pointer.read_text(encoding="utf-8").strip()
    except (UnicodeDecodeError, OSError) as problem:
        raise _damaged_pointer(pointer, name, "it is not readable text") from problem
    if version and not is_version_name(version):
        raise _damaged_pointer(pointer, name, f"it names {version[:40]!r}, not a version")
    return version or None


def _damaged_pointer(pointer: Path, name: str, why: str) -> InputError:
    return InputError(f"the active-version pointer {pointer} is damaged: {why}",
                      f"choose the version to use with 'vqseg models activate {name}@VERSION' ('vqseg models list {name}' shows them)")


def locate_model(spec: str | None, model_dir: str | Path | None = None) -> Path:
    """The folder holding card.json and weights.safetensors; InputError naming what was searched."""
    if model_dir is not None:
        folder = Path(model_dir)
        if not (folder / "card.json").is_file():
            raise InputError(f"--model-dir {folder} holds no model (card.json missing)", "point at a folder written by vqseg train or the model store")
        return folder
    try:
        name, version = split_model_spec(spec or DEFAULT_MODEL_NAME)
    except ValueError as problem:
        raise InputError(str(problem), "use NAME or NAME@VERSION, e.g. lung-lesion@v0002") from None
    store = models_dir() / name
    if version:
        folder = store / version
        if (folder / "card.json").is_file():
            return folder
        known = sorted(p.name for p in store.glob("v*") if (p / "card.json").is_file()) if store.is_dir() else []
        raise InputError(f"model {name} has no version {version!r}", f"known versions: {', '.join(known) or 'none'}")
    shipped = shipped_models_dir() / name
    active = store / ACTIVE_FILE
    if active.is_file():
        version = read_active_pointer(active, name)
        if version is None:
            raise InputError(f"the active-version pointer {active} is empty",
                             f"choose the version to use with 'vqseg models activate {name}@VERSION'")
        folder = shipped if version == SHIPPED else store / version
        if (folder / "card.json").is_file():
            return folder
        raise InputError(f"the active version of model {name} ({folder.name}) is missing", f"run: vqseg models activate {name}@VERSION")
    if (shipped / "card.json").is_file():
        return shipped
    raise InputError(
        f"no model named {name!r} (looked in {store} and {shipped})",
        "train one with vqseg train and pass --model-dir, or give the name of an installed model",
    )
