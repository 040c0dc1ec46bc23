"""pool.json: the marker that makes a folder a pool, with its name and class table.

    info, created = create_pool_folder(layout, "pilot", LUNG_TUMOUR, lock_timeout_s=60)
    info = read_pool_info(layout)                              # InputError if not a pool

pool.json is written last when a pool is created, so a folder whose creation was interrupted is
not a pool yet and a second `create` simply finishes the job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from VQSegCore.atomic import write_json_atomic
from VQSegCore.classes import ClassTable
from VQSegCore.dataset_spec import class_table_from_json
from VQSegCore.errors import InputError
from VQSegCore.pool.journal import PoolLock
from VQSegCore.pool.layout import CASES_FOLDER, LOCK_FILE, MANIFEST_FILE, POOL_FILE, TEMP_PREFIX, PoolLayout, utc_now

POOL_FORMAT_VERSION = 1
_NOT_A_POOL_HINT = "give the folder of an existing pool, or let 'vqseg pool add' create a new one"


@dataclass(frozen=True)
class PoolInfo:
    name: str
    created: str
    classes: ClassTable
    format_version: int = POOL_FORMAT_VERSION

    def to_json(self) -> dict:
        return {"format_version": self.format_version, "name": self.name, "created": self.created, "classes": self.classes.to_list()}


def is_pool(layout: PoolLayout) -> bool:
    return layout.pool_file.is_file()


def read_pool_info(layout: PoolLayout) -> PoolInfo:
    where = f"pool {layout.root}"
    if not layout.root.is_dir():
        raise InputError(f"{where}: no such folder", _NOT_A_POOL_HINT)
    if not layout.pool_file.is_file():
        raise InputError(f"{where}: not a VQSeg pool (no pool.json)", _NOT_A_POOL_HINT)
    try:
        data = json.loads(layout.pool_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{where}: pool.json is not valid JSON ({error})", "restore pool.json from a backup") from error
    if not isinstance(data, dict):
        raise InputError(f"{where}: pool.json is not a JSON object", "restore pool.json from a backup")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise InputError(f"{where}: pool.json has no format_version", "restore pool.json from a backup")
    if version > POOL_FORMAT_VERSION:
        raise InputError(f"{where}: pool format {version} was written by a newer VQSeg (this one reads up to {POOL_FORMAT_VERSION})", "update VQSeg")
    classes = class_table_from_json(data.get("classes"), f"{where}: pool.json")
    return PoolInfo(name=str(data.get("name") or layout.root.name), created=str(data.get("created", "")), classes=classes, format_version=version)


def create_pool_folder(layout: PoolLayout, name: str, classes: ClassTable, lock_timeout_s: float, exist_ok: bool = False) -> tuple[PoolInfo, bool]:
    """Make `layout.root` a pool; (info, True). With `exist_ok`, an existing pool is opened instead: (info, False).

    Creators may race (two first `add`s): the lock lets exactly one of them write pool.json.
    """
    if is_pool(layout):
        return _existing(layout, exist_ok)
    _refuse_foreign_folder(layout)
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create pool folder {layout.root}: {error.strerror}", "choose a folder you can write to") from error
    with PoolLock(layout.lock_file, lock_timeout_s):
        if is_pool(layout):  # another process created it while we waited for the lock
            return _existing(layout, exist_ok)
        layout.cases_dir.mkdir(exist_ok=True)
        layout.manifest.touch(exist_ok=True)
        info = PoolInfo(name=name, created=utc_now(), classes=classes)
        write_json_atomic(layout.pool_file, info.to_json())
    return info, True


def _existing(layout: PoolLayout, exist_ok: bool) -> tuple[PoolInfo, bool]:
    if not exist_ok:
        raise InputError(f"{layout.root} is already a pool", "open it instead of creating it")
    return read_pool_info(layout), False


def _refuse_foreign_folder(layout: PoolLayout) -> None:
    # Never turn a folder that holds other things (a typo'd path, a home folder) into a pool.
    if not layout.root.exists():
        return
    if not layout.root.is_dir():
        raise InputError(f"cannot create a pool at {layout.root}: it is a file", "give a folder path")
    # pool.json too: another creator may have written it since is_pool() said no; the lock decides then
    ours = {CASES_FOLDER, MANIFEST_FILE, LOCK_FILE, POOL_FILE}
    foreign = sorted(p.name for p in layout.root.iterdir() if p.name not in ours and not p.name.startswith(TEMP_PREFIX))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
        raise InputError(f"cannot create a pool in {layout.root}: the folder is not empty ({shown}) and is not a pool", "give a new or empty folder")
