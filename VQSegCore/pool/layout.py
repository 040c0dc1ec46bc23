"""Where everything lives inside a pool folder, and which names are cases or leftovers.

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
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

# The atomic module's temporary prefix: a file with it was never renamed into place, so never valid.
from VQSegCore.atomic import _TEMP_PREFIX as TEMP_PREFIX

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
