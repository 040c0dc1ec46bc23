"""Make a built folder durable and move folders in one rename each.

    fsync_folder_tree(building)                 # every file and the folder itself reach the disk
    move_folder(building, layout.case_dir(id))  # one os.rename; the parent folder is fsync'd

A rename inside one file system is atomic: a reader (or a crash) sees the folder under its old
name or under its new one, never a mix. fsync before the rename so the new name never points at
data that is still only in the page cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from VQSegCore.atomic import fsync_path


def fsync_folder_tree(folder: Path) -> None:
    for item in folder.iterdir():
        if item.is_file():
            fsync_path(item)
    fsync_path(folder)


def move_folder(source: Path, target: Path) -> None:
    """Rename `source` to `target`, which must not exist (os.rename would silently replace an empty folder)."""
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    os.rename(source, target)
    fsync_path(target.parent)


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link an unchanged file into a new case folder (instant, no extra space); copy across devices."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
