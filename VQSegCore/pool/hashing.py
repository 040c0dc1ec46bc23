"""SHA-256 of a file, read in chunks so a 200 MB CT does not sit in memory twice.

    sha256_file(Path("cases/case-0001-a1b2c3/image.nii.gz"))   # "9f86d0…"
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
