"""Atomic file output: write to a temporary name in the target folder, then rename into place.

A reader never sees a half-written file, and a crash, cancel or full disk leaves only the old file
(or nothing). The temporary name keeps the target's full suffix (`.nii.gz`, `.seg.nrrd`) because
SimpleITK picks the file format from the extension.

Folders (a pool's case, a model store's version) are built the same way: under a hidden name
beside their place, made durable (`fsync_folder_tree`: every file, then the folder) and published
with one rename (`move_folder`). A rename inside one file system is atomic: a reader (or a crash)
sees the folder under its old name or under its new one, never a mix; the fsync comes first so the
new name never points at data still only in the page cache.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from VQSegCore.errors import InputError

_TEMP_PREFIX = ".vqseg-tmp-"

# OS errors that the user can fix by choosing another path or freeing space.
_USER_FIXABLE = {
    errno.ENOSPC: ("the disk is full", "free some disk space or choose another output folder"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or choose another output folder"),
    errno.EACCES: ("permission denied", "choose a folder you can write to"),
    errno.EPERM: ("permission denied", "choose a folder you can write to"),
    errno.EROFS: ("the file system is read-only", "choose a writable folder"),
    errno.ENOENT: ("the folder does not exist", "create the folder first or fix the path"),
    errno.ENOTDIR: ("a part of the path is not a folder", "fix the output path"),
    errno.EISDIR: ("the path is a folder", "give a file name, not a folder"),
}
_CHECK_THE_DISK = "check the disk's free space, or choose another output folder"


def full_suffix(path: Path) -> str:
    """`.nii.gz` for `a.nii.gz`, `.seg.nrrd` for `b.seg.nrrd`, `.json` for `c.json`."""
    suffixes = path.suffixes
    if len(suffixes) >= 2 and suffixes[-1].lower() in {".gz", ".nrrd"} and suffixes[-2].lower() in {".nii", ".seg"}:
        return "".join(suffixes[-2:])
    return path.suffix


def output_error(path: Path, error: OSError) -> InputError:
    """Turn an OS error on an output path into a clear InputError (exit 2)."""
    fallback = _CHECK_THE_DISK if error.errno == errno.EIO else "check the output path"
    problem, hint = _USER_FIXABLE.get(error.errno or -1, (error.strerror or str(error), fallback))
    return InputError(f"cannot write {path}: {problem}", hint)


def check_writable_folder(path: Path) -> None:
    """Fail early, before any work, when the folder of an output path cannot take a file."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise InputError(f"cannot write {path}: the folder {folder} does not exist", "create the folder first or fix the path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: permission denied on {folder}", "choose a folder you can write to")
    if Path(path).is_dir():
        raise InputError(f"cannot write {path}: the path is a folder", "give a file name, not a folder")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync and rename it into place.

    On any exception (including cancel) the temporary file is removed and the target is untouched.
    OS errors such as a full disk or a read-only folder become InputError.
    """
    target = Path(path)
    temp = _temporary_beside(target)
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, target)
        fsync_path(target.parent)
    except OSError as error:
        _remove_quietly(temp)
        raise output_error(target, error) from error
    except BaseException:
        _remove_quietly(temp)
        raise


def _temporary_beside(target: Path) -> Path:
    """`.vqseg-tmp-<random>-name.nii.gz` in the target's folder: same file system, same suffix."""
    suffix = full_suffix(target)
    stem = target.name[: len(target.name) - len(suffix)]
    return target.with_name(f"{_TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{stem}{suffix}")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_output(path) as temp:
        temp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, payload: object) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporaries left by a killed process (they were never renamed, so never valid)."""
    removed = []
    for leftover in Path(folder).glob(f"{_TEMP_PREFIX}*"):
        _remove_quietly(leftover)
        removed.append(leftover)
    return removed


def _fsync_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "nothing was written", str(path))
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_path(path: Path) -> None:
    """fsync a file or a folder: a folder's fsync makes a rename in it durable (where the platform allows opening folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        path.unlink()


# ---- folders: build under a hidden name, make durable, publish with one rename -----------------
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
