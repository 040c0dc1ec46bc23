"""The rules of model names: NAME, NAME@VERSION, version folders, and the label shown for a model folder.

One owner for the CLI (`models/locate.py`) and the Slicer module (`VQSegLib/model_card.py`). Standard
library only: the Slicer GUI process imports it without torch (like VQSegCore.events).
"""

from __future__ import annotations

import os
import re

SHIPPED = "shipped"  # the version name of a read-only default model in Resources/Models
SHIPPED_PARENT = "Models"  # the folder that holds the shipped models
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VERSION = re.compile(r"^v\d{4,}$")


def split_model_spec(spec: str) -> tuple[str, str]:
    """'lung-lesion@v0003' -> ('lung-lesion', 'v0003'); 'lung-lesion' -> ('lung-lesion', ''); ValueError when malformed."""
    name, _, version = spec.partition("@")
    if not NAME.match(name) or (version and not NAME.match(version)):
        raise ValueError(f"bad model name {spec!r}")
    return name, version


def is_version_name(text: str) -> bool:
    """A version the store writes (v0001 …) or the shipped default."""
    return bool(VERSION.match(text)) or text == SHIPPED


def version_label(folder: str | os.PathLike) -> str:
    """'lung-lesion@v0003' for <store>/lung-lesion/v0003; 'lung-lesion@shipped' for Resources/Models/lung-lesion."""
    folder = os.path.normpath(os.path.abspath(os.fspath(folder)))
    name, parent = os.path.basename(folder), os.path.basename(os.path.dirname(folder))
    if parent == SHIPPED_PARENT:
        return f"{name}@{SHIPPED}"
    return f"{parent}@{name}"
