"""Turn the user's `--pool` value into a folder: a bare name lives under $VQSEG_HOME/pools.

    pool_folder("pilot")          # $VQSEG_HOME/pools/pilot
    pool_folder("./pilot")        # ./pilot (anything with a slash, or starting with . or ~, is a path)
    pool_folder(None)             # $VQSEG_POOL, read now (every command that takes --pool uses this)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from VQSegCore.errors import InputError
from VQSegCore.paths import pools_dir

_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def pool_folder(name_or_path: str | os.PathLike | None) -> Path:
    text = os.fspath(name_or_path if name_or_path else os.environ.get("VQSEG_POOL", "")).strip()
    if not text:
        raise InputError("no pool given", "give --pool NAME (under $VQSEG_HOME/pools) or --pool PATH, or set VQSEG_POOL")
    if looks_like_path(text):
        return Path(text).expanduser()
    if not _POOL_NAME.match(text):
        raise InputError(f"pool name {text!r} is not a plain name", "use letters, digits, '.', '_' or '-', or give a path such as ./my-pool")
    return pools_dir() / text


def looks_like_path(text: str) -> bool:
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    return any(sep in text for sep in separators) or text.startswith((".", "~"))
