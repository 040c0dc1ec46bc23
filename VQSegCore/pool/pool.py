"""`Pool`: the one object callers use; it takes the lock and hands the work to one module per job.

    pool = Pool.create("~/.vqseg/pools/pilot", "pilot")            # or Pool.open(folder)
    case = pool.add("ct.nrrd", label="corrected.nii.gz", draft="model.nii.gz", draft_model="lung/v0003")
    pool.update_label(case.case_id, "recorrected.nii.gz")
    pool.cases(); pool.case(case.case_id); pool.remove(case.case_id)
    report = pool.verify()                  # report.intact, report.problems, report.leftovers
    DatasetSpec.load(pool.export_spec("pool-spec.json"))   # for `vqseg train --dataset`

Inputs are read and checked before the lock is taken (slow, and nothing is written when they are
bad); every change then runs under the exclusive lock. Reading cases needs no lock: a case folder
appears and disappears in one rename.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from VQSegCore.classes import LUNG_TUMOUR, ClassTable
from VQSegCore.errors import InputError
from VQSegCore.io.read import read_volume
from VQSegCore.pool.case_changes import CaseInputs, add_case, read_case_inputs, read_label_values, remove_case, update_case_label
from VQSegCore.pool.journal import DEFAULT_LOCK_TIMEOUT_S, PoolLock, read_entries
from VQSegCore.pool.layout import PoolLayout
from VQSegCore.pool.pool_file import PoolInfo, create_pool_folder, is_pool, read_pool_info
from VQSegCore.pool.reading import check_links, export_spec, find_case, link_cases, list_cases
from VQSegCore.pool.records import CaseRecord
from VQSegCore.pool.verify import VerifyReport, verify_pool


class Pool:
    def __init__(self, layout: PoolLayout, info: PoolInfo, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.layout = layout
        self.info = info
        self.lock_timeout_s = lock_timeout_s

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, folder: str | os.PathLike, name: str | None = None, classes: ClassTable = LUNG_TUMOUR,
               lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, exist_ok: bool = False) -> "Pool":
        layout = _layout(folder)
        info, _ = create_pool_folder(layout, name or layout.root.name, classes, lock_timeout_s, exist_ok=exist_ok)
        return cls(layout, info, lock_timeout_s)

    @staticmethod
    def classes_at(folder: str | os.PathLike) -> ClassTable | None:
        """The class table of the pool in `folder`, or None when there is no pool there yet."""
        layout = _layout(folder)
        return read_pool_info(layout).classes if is_pool(layout) else None

    @classmethod
    def open(cls, folder: str | os.PathLike, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> "Pool":
        layout = _layout(folder)
        return cls(layout, read_pool_info(layout), lock_timeout_s)

    @classmethod
    def open_or_create(cls, folder: str | os.PathLike, classes: ClassTable | None = None,
                       lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> tuple["Pool", bool]:
        """Open the pool, creating it (with `classes`, default lung tumour) if it does not exist; (pool, created)."""
        layout = _layout(folder)
        info, created = create_pool_folder(layout, layout.root.name, classes or LUNG_TUMOUR, lock_timeout_s, exist_ok=True)
        if not created and classes is not None and classes != info.classes:
            raise InputError(f"pool {layout.root} already exists with another class table ({', '.join(info.classes.ids)})",
                             "leave out --classes, or give a new pool")
        return cls(layout, info, lock_timeout_s), created

    @property
    def folder(self) -> Path:
        return self.layout.root

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def classes(self) -> ClassTable:
        return self.info.classes

    def lock(self, shared: bool = False) -> PoolLock:
        """The pool lock as a context manager (exclusive unless `shared`)."""
        return PoolLock(self.layout.lock_file, self.lock_timeout_s, shared=shared)

    # -- reading ---------------------------------------------------------------------------

    def cases(self) -> list[CaseRecord]:
        """Complete cases in id order (cases with a broken meta.json are left out: see `verify`)."""
        return list_cases(self.layout)[0]

    def unreadable_cases(self) -> list[tuple[str, str]]:
        return list_cases(self.layout)[1]

    def case(self, case_id: str) -> CaseRecord:
        return find_case(self.layout, case_id)

    def manifest(self) -> list[dict]:
        return read_entries(self.layout.manifest)[0]

    # -- changing --------------------------------------------------------------------------

    def add(self, image_path: str | os.PathLike, label: str | os.PathLike | None = None, draft: str | os.PathLike | None = None,
            source_name: str | None = None, draft_model: str | None = None) -> CaseRecord:
        inputs = read_case_inputs(image_path, self.classes, label=label, draft=draft, source_name=source_name)
        return self.add_inputs(inputs, draft_model=draft_model)

    def add_inputs(self, inputs: CaseInputs, draft_model: str | None = None) -> CaseRecord:
        """Add a case from inputs already read and checked with `read_case_inputs` (against this pool's classes)."""
        if inputs.classes != self.classes:
            raise InputError(f"pool {self.folder} has class table {', '.join(self.classes.ids)}; the inputs were checked against {', '.join(inputs.classes.ids)}",
                             "read the inputs with the pool's class table")
        with self.lock():
            return add_case(self.layout, self.info, inputs, draft_model=draft_model)

    def update_label(self, case_id: str, label_path: str | os.PathLike) -> CaseRecord:
        current = self.case(case_id)
        if not Path(label_path).exists():
            raise InputError(f"label {label_path}: no such file or folder", "check the path")
        reference = read_volume(current.image_path).image
        label = read_label_values(label_path, reference, self.classes, "label")
        with self.lock():
            current = self.case(case_id)  # again under the lock: it may have changed or gone meanwhile
            return update_case_label(self.layout, self.info, current, label, reference)

    def remove(self, case_id: str) -> CaseRecord:
        with self.lock():
            record = self.case(case_id)
            remove_case(self.layout, record)
        return record

    # -- checking and exporting ------------------------------------------------------------

    def verify(self, repair: bool = False, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Check every case (see `verify`); with `repair`, delete leftovers of interrupted commands."""
        with self.lock(shared=not repair):
            return verify_pool(self.layout, repair=repair, progress=progress)

    def snapshot(self, target: str | os.PathLike) -> tuple[list[CaseRecord], list[tuple[str, str]]]:
        """Link every case into `target` under the shared lock, then check its hashes (reading.py): (intact records, damaged cases)."""
        with self.lock(shared=True):
            linked, damaged = link_cases(self.layout, Path(target))
        return check_links(linked, damaged)

    def export_spec(self, path: str | os.PathLike, val_fraction: float = 0.0, seed: int = 0, include_unlabelled: bool = True) -> Path:
        """Write a dataset spec for `vqseg train` (see reading.py); returns its path."""
        with self.lock(shared=True):
            return export_spec(self.layout, self.info, self.cases(), path, val_fraction, seed, include_unlabelled)


def _layout(folder: str | os.PathLike) -> PoolLayout:
    return PoolLayout(Path(folder).expanduser())
