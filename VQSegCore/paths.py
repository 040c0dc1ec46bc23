"""Where VQSeg keeps its pools and models: $VQSEG_HOME, by default ~/.vqseg."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path("~/.vqseg")


def vqseg_home() -> Path:
    return Path(os.environ.get("VQSEG_HOME") or DEFAULT_HOME).expanduser()


def pools_dir() -> Path:
    return vqseg_home() / "pools"


def models_dir() -> Path:
    return vqseg_home() / "models"


def repository_root() -> Path:
    """The checkout or built-extension folder that holds VQSegCore/ and Resources/."""
    return Path(__file__).resolve().parent.parent
