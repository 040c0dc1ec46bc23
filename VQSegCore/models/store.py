"""The model store: versions of each model, one `active` pointer, promotion records and rollback.

    store = ModelStore()                                  # $VQSEG_HOME/models
    version = store.add_version("lung-lesion", model, parent="v0001", training=..., metrics=...)
    store.activate("lung-lesion", version)                # `active` rewritten atomically; logged
    store.rollback("lung-lesion")                         # back to the version active before
    store.export_version("lung-lesion", "v0002", "v2.vqseg.tar")   # card + safetensors, no pickle
    store.import_version("v2.vqseg.tar", name="lung-lesion")

Layout (docs/architecture.md §3.5): `<root>/<name>/v0001/` holds `weights.safetensors`, `card.json` (save_model)
and `store.json` (status "candidate" | "promoted", the reason, when); `<name>/active` names the
version in use; `<name>/activations.jsonl` logs every activation (rollback walks it back).
A version folder is built under a temporary name and renamed into place, so a killed write
leaves no half version. Shipped defaults (Resources/Models/<name>) are listed read-only.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tarfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from VQSegCore.atomic import fsync_folder_tree, move_folder, remove_tree, write_bytes_atomic, write_json_atomic, write_text_atomic
from VQSegCore.errors import InputError
from VQSegCore.file_lock import try_lock, unlock
from VQSegCore.model.card_check import MAX_CARD_BYTES, MAX_WEIGHTS_BYTES, check_weights, config_from_card, parse_card
from VQSegCore.model.persistence import CARD_FILE, WEIGHTS_FILE, read_card, read_card_fields, save_model
from VQSegCore.model_names import NAME, SHIPPED, VERSION
from VQSegCore.models.locate import ACTIVE_FILE, read_active_pointer, shipped_models_dir
from VQSegCore.paths import models_dir

STORE_FILE = "store.json"
LOG_FILE = "activations.jsonl"
LOCK_FILE = ".lock"
LOCK_TIMEOUT_S = 30.0
ARCHIVE_MEMBERS = (CARD_FILE, WEIGHTS_FILE, STORE_FILE)
MEMBER_LIMITS = {CARD_FILE: MAX_CARD_BYTES, WEIGHTS_FILE: MAX_WEIGHTS_BYTES, STORE_FILE: 2**20}


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    path: Path
    status: str  # "promoted" | "candidate" | "shipped"
    active: bool
    created: str
    parent: str | None
    reason: str | None
    metrics: dict

    def summary(self) -> dict:
        """One line's worth: everything but per-case metrics (`models show` has those)."""
        scalars = {key: value for key, value in self.metrics.items() if not isinstance(value, (dict, list))}
        return {"version": self.version, "status": self.status, "active": self.active, "created": self.created,
                "parent": self.parent, "reason": self.reason, "path": str(self.path), "metrics": scalars}

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "path": str(self.path), "status": self.status, "active": self.active,
                "created": self.created, "parent": self.parent, "reason": self.reason, "metrics": self.metrics}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InputError(f"bad model name {name!r}", "use letters, digits, '.', '_' or '-', e.g. lung-lesion")
    return name


class ModelStore:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else models_dir()

    # ---- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        found = set()
        if self.root.is_dir():
            found |= {p.name for p in self.root.iterdir() if p.is_dir() and NAME.match(p.name)}
        shipped = shipped_models_dir()
        if shipped.is_dir():
            found |= {p.name for p in shipped.iterdir() if (p / CARD_FILE).is_file()}
        return sorted(found)

    def versions(self, name: str) -> list[VersionInfo]:
        check_name(name)
        try:
            active = self.active(name)
        except InputError:  # a damaged pointer: list the versions, so that one can be activated
            active = None
        infos = []
        folder = self.root / name
        if folder.is_dir():
            for path in sorted(p for p in folder.iterdir() if VERSION.match(p.name) and _complete(p)):
                infos.append(self._info(name, path.name, path, active))
        shipped = shipped_models_dir() / name
        if (shipped / CARD_FILE).is_file():
            infos.append(self._info(name, SHIPPED, shipped, active))
        return infos

    def active(self, name: str) -> str | None:
        pointer = self.root / check_name(name) / ACTIVE_FILE
        if pointer.is_file():
            return read_active_pointer(pointer, name)
        return SHIPPED if (shipped_models_dir() / name / CARD_FILE).is_file() else None

    def path(self, name: str, version: str) -> Path:
        if version == SHIPPED:
            path = shipped_models_dir() / check_name(name)
            found = (path / CARD_FILE).is_file()
        else:
            path = self.root / check_name(name) / version
            found = _complete(path)
        if not found:
            known = ", ".join(v.version for v in self.versions(name)) or "none"
            raise InputError(f"model {name} has no version {version!r}", f"known versions: {known}")
        return path

    def info(self, name: str, version: str) -> VersionInfo:
        return self._info(name, version, self.path(name, version), self.active(name))

    def was_activated(self, name: str, version: str) -> bool:
        """Whether `version` was ever made active (the activation log), even if another is active now."""
        return any(entry.get("active") == version for entry in _log_entries(self.root / check_name(name)))

    # ---- writing -------------------------------------------------------------------------------
    def add_version(self, name: str, model, *, training: dict | None = None, metrics: dict | None = None,
                    parent: str | None = None, ood_reference: dict | None = None, status: str = "candidate",
                    reason: str | None = None) -> str:
        """Save `model` as the next version (not activated); returns its version string."""
        with self._locked(name) as folder, _building(folder) as (building, version):
            save_model(model, building, training=training, metrics=metrics, parent=parent, ood_reference=ood_reference)
            write_json_atomic(building / STORE_FILE, {"status": status, "reason": reason, "created": _now()})
        return version

    def activate(self, name: str, version: str, reason: str = "activate") -> None:
        self.path(name, version)  # exists?
        with self._locked(name) as folder:
            previous = self._active_pointer(folder)
            write_text_atomic(folder / ACTIVE_FILE, version + "\n")
            _append_line(folder / LOG_FILE, {"time": _now(), "active": version, "previous": previous, "reason": reason})

    def rollback(self, name: str) -> str:
        """Re-activate the version that was active before the current one (repeated rollbacks go further back)."""
        with self._locked(name) as folder:
            current = self._active_pointer(folder)
            # Replay the log as a stack: an activation pushes, a rollback pops.
            stack: list[str] = []
            for entry in _log_entries(folder):
                if entry.get("reason") == "rollback":
                    if stack:
                        stack.pop()
                    continue
                if not stack and entry.get("previous"):
                    stack.append(entry["previous"])
                stack.append(entry["active"])
            target = stack[-2] if len(stack) >= 2 and stack[-1] == current else None
            if target is None:
                raise InputError(f"model {name} has no earlier active version to roll back to", "activate a version by name instead")
            if target != SHIPPED and not (folder / target / CARD_FILE).is_file():
                raise InputError(f"the previous version {target} of model {name} is missing", "activate a version by name instead")
            write_text_atomic(folder / ACTIVE_FILE, target + "\n")
            _append_line(folder / LOG_FILE, {"time": _now(), "active": target, "previous": current, "reason": "rollback"})
        return target

    def export_version(self, name: str, version: str, archive: str | os.PathLike) -> Path:
        """One uncompressed tar: card.json, weights.safetensors, store.json. No pickle anywhere."""
        source = self.path(name, version)
        read_card(source)
        archive = Path(archive)
        from VQSegCore.atomic import atomic_output

        with atomic_output(archive) as temp:
            with tarfile.open(temp, "w") as tar:
                for member in ARCHIVE_MEMBERS:
                    if (source / member).is_file():
                        tar.add(source / member, arcname=member)
        return archive

    def import_version(self, archive: str | os.PathLike, name: str) -> str:
        """Add an exported version as a new candidate of `name`; refuses anything but the three files."""
        archive = Path(archive)
        if not archive.is_file():
            raise InputError(f"archive not found: {archive}", "give a file written by vqseg models export")
        files: dict[str, bytes] = {}
        try:
            with tarfile.open(archive, "r:") as tar:
                for member in tar.getmembers():
                    if member.name not in ARCHIVE_MEMBERS or not member.isfile() or member.name in files:
                        raise InputError(f"{archive}: unexpected member {member.name!r}", "only card.json, weights.safetensors and store.json are accepted, once each")
                    limit = MEMBER_LIMITS[member.name]
                    if member.size > limit:  # checked before reading: the size a tar claims is not trusted with memory
                        raise InputError(f"{archive}: {member.name} claims {member.size / 2**20:.0f} MB (at most {limit // 2**20} MB)",
                                         "give a file written by vqseg models export")
                    files[member.name] = tar.extractfile(member).read(limit + 1)
        except (tarfile.TarError, OSError) as problem:
            raise InputError(f"{archive} is not a model archive: {problem}", "give a file written by vqseg models export") from problem
        if CARD_FILE not in files or WEIGHTS_FILE not in files:
            raise InputError(f"{archive} lacks card.json or weights.safetensors", "give a file written by vqseg models export")
        card = parse_card(files[CARD_FILE], str(archive))
        digest = hashlib.sha256(files[WEIGHTS_FILE]).hexdigest()
        if digest != card.get("weights_sha256"):
            raise InputError(f"{archive}: the weights do not match their card", "the archive is damaged; export it again")
        read_card_fields(card, str(archive))
        check_weights(files[WEIGHTS_FILE], config_from_card(card, str(archive)), str(archive))
        with self._locked(name) as folder, _building(folder) as (building, version):
            # fsync-ed writes: the rename below must never publish files still only in the page cache
            write_bytes_atomic(building / WEIGHTS_FILE, files[WEIGHTS_FILE])
            write_bytes_atomic(building / CARD_FILE, files[CARD_FILE])
            write_json_atomic(building / STORE_FILE, {"status": "candidate", "reason": f"imported from {archive.name}", "created": _now()})
            read_card(building)
        return version

    # ---- helpers -------------------------------------------------------------------------------
    def _info(self, name: str, version: str, path: Path, active: str | None) -> VersionInfo:
        card = read_card(path)
        record = _read_json(path / STORE_FILE, {})
        status = SHIPPED if version == SHIPPED else record.get("status", "candidate")
        return VersionInfo(name, version, path, status, version == active, record.get("created", card.get("created", "")),
                           card.get("parent"), record.get("reason"), card.get("metrics", {}))

    def _active_pointer(self, folder: Path) -> str | None:
        pointer = folder / ACTIVE_FILE
        if pointer.is_file():
            try:
                return pointer.read_text(encoding="utf-8").strip() or None
            except (UnicodeDecodeError, OSError):  # damaged: activating a version repairs it
                return None
        return SHIPPED if (shipped_models_dir() / folder.name / CARD_FILE).is_file() else None

    @contextmanager
    def _locked(self, name: str):
        folder = self.root / check_name(name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as problem:
            raise InputError(f"cannot create the model folder {folder}: {problem}", "check VQSEG_HOME and its permissions") from problem
        for stale in folder.glob(".building-*"):  # a killed writer's leftovers never became versions
            if _stale(stale):
                shutil.rmtree(stale, ignore_errors=True)
        with open(folder / LOCK_FILE, "a+") as handle:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while not try_lock(handle.fileno()):
                if time.monotonic() > deadline:
                    raise InputError(f"the model store {folder} is busy (locked by another process)", "try again when it finishes")
                time.sleep(0.05)
            try:
                yield folder
            finally:
                unlock(handle.fileno())


def _next_version(folder: Path) -> str:
    numbers = [int(p.name[1:]) for p in folder.iterdir() if VERSION.match(p.name)]
    return f"v{max(numbers, default=0) + 1:04d}"


@contextmanager
def _building(folder: Path):
    """(temporary folder, version) for a new version; renamed into place only when the body succeeds.

    Call with the store locked. On an error the temporary folder is removed at once; after a kill
    it is left for `_locked` to sweep (its process is gone), and it is never listed as a version.
    """
    version = _next_version(folder)
    building = folder / f".building-{version}-{os.getpid()}"
    remove_tree(building)  # only a reused process id can have left one
    building.mkdir()
    try:
        yield building, version
        fsync_folder_tree(building)
        move_folder(building, folder / version)  # the pool publishes its cases the same way
    except BaseException:
        remove_tree(building)
        raise


def _complete(folder: Path) -> bool:
    """A version folder that holds both its card and its weights (anything less is never listed)."""
    return (folder / CARD_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def _stale(folder: Path) -> bool:
    """A building folder whose writing process is gone."""
    try:
        pid = int(folder.name.rsplit("-", 1)[-1])
    except ValueError:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return default


def _read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return []


def _log_entries(folder: Path) -> list[dict]:
    """The activation log; a line cut short by a killed writer is skipped, not fatal."""
    entries = []
    for line in _read_lines(folder / LOG_FILE):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
