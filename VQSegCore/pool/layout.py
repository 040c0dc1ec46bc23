"""Where a pool's files are, how they are named, and what identifies them: the folder layout,
case ids, the `--pool` location rule, UTC time stamps and file hashes.

layout:
    Where everything lives inside a pool folder, and which names are cases or leftovers.

        layout = PoolLayout(Path("~/.vqseg/pools/pilot").expanduser())
        layout.case_dir("case-0007-3fa9c1")      # .../cases/case-0007-3fa9c1
        entry_kind(".building-case-0007-3fa9c1-5d0e")   # "building"

    ```
    pool.json            what the pool is (format version, name, created, class table)
    cases/<case-id>/     image.nii.gz, label.nii.gz (optional), draft.nii.gz (optional), meta.json
    manifest.jsonl       append-only log of adds, label updates and removes
    .lock                flock target that serialises writers
    ```
    A case folder is built under a hidden name inside cases/ and renamed into place in one step, so
    only names that match CASE_ID_PATTERN are cases; hidden names are the traces of interrupted work.

location:
    Turn the user's `--pool` value into a folder: a bare name lives under $VQSEG_HOME/pools.

        pool_folder("pilot")          # $VQSEG_HOME/pools/pilot
        pool_folder("./pilot")        # ./pilot (anything with a slash, or starting with . or ~, is a path)
        pool_folder(None)             # $VQSEG_POOL, read now (every command that takes --pool uses this)

clock:
    UTC timestamps as ISO 8601 strings, the one time format of pool files.

        utc_now()   # "2025-03-14T09:26:53.589Z"

hashing:
    SHA-256 of a file, read in chunks so a 200 MB CT does not sit in memory twice.

        sha256_file(Path("cases/case-0001-a1b2c3/image.nii.gz"))   # "9f86d0…"
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

# The atomic module's temporary prefix: a file with it was never renamed into place, so never valid.
from VQSegCore.atomic import _TEMP_PREFIX as TEMP_PREFIX
from VQSegCore.errors import InputError
from VQSegCore.paths import pools_dir


# ---- layout ----------------------------------------------------------------------------------
POOL_FILE = "pool.json"
CASES_FOLDER = "cases"
MANIFEST_FILE = "manifest.jsonl"
LOCK_FILE = ".lock"

IMAGE_FILE = "image.nii.gz"
LABEL_FILE = "label.nii.gz"
DRAFT_FILE = "draft.nii.gz"
META_FILE = "meta.json"
CASE_DATA_FILES = (IMAGE_FILE, LABEL_FILE, DRAFT_FILE)

BUILDING_PREFIX = ".building-"  # a case folder being written (add or label update)
REMOVING_PREFIX = ".removing-"  # a removed case, moved aside before it is deleted
REPLACED_PREFIX = ".replaced-"  # the previous version of a case whose label was just updated

CASE_ID_PATTERN = re.compile(r"^case-(\d{4,})-[0-9a-f]{6}$")


@dataclass(frozen=True)
class PoolLayout:
    root: Path

    @property
    def pool_file(self) -> Path:
        return self.root / POOL_FILE

    @property
    def cases_dir(self) -> Path:
        return self.root / CASES_FOLDER

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    def case_dir(self, case_id: str) -> Path:
        return self.cases_dir / case_id

    def scratch_dir(self, prefix: str, case_id: str) -> Path:
        """A fresh hidden folder name beside the cases, e.g. `.building-<id>-<random>`."""
        return self.cases_dir / f"{prefix}{case_id}-{secrets.token_hex(3)}"


def is_case_id(name: str) -> bool:
    return CASE_ID_PATTERN.match(name) is not None


def case_number(case_id: str) -> int | None:
    """7 for `case-0007-3fa9c1`; None for anything that is not a case id."""
    match = CASE_ID_PATTERN.match(case_id)
    return int(match.group(1)) if match else None


def entry_kind(name: str) -> str:
    """What a name inside cases/ is: case, building, removing, replaced, temporary or unknown."""
    if is_case_id(name):
        return "case"
    for prefix, kind in ((BUILDING_PREFIX, "building"), (REMOVING_PREFIX, "removing"), (REPLACED_PREFIX, "replaced"), (TEMP_PREFIX, "temporary")):
        if name.startswith(prefix):
            return kind
    return "unknown"


def scratch_case_id(name: str) -> str | None:
    """The case id inside a scratch folder name (`.replaced-<id>-<random>` → `<id>`)."""
    for prefix in (BUILDING_PREFIX, REMOVING_PREFIX, REPLACED_PREFIX):
        if name.startswith(prefix):
            candidate = name[len(prefix):].rsplit("-", 1)[0]
            return candidate if is_case_id(candidate) else None
    return None


# ---- location --------------------------------------------------------------------------------
_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def pool_folder(name_or_path: str | os.PathLike | None) -> Path:
    text = os.fspath(name_or_path if name_or_path is not None else os.environ.get("VQSEG_POOL", "")).strip()
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


# ---- clock -----------------------------------------------------------------------------------
def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- hashing ---------------------------------------------------------------------------------
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
