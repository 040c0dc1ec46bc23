"""Check a pool: every meta.json parses, every file is there, every hash matches; find leftovers.

    report = verify_pool(layout)                 # looks only
    report = verify_pool(layout, progress=lambda done, total: print(done, total))
    report = verify_pool(layout, repair=True)    # also deletes leftovers, restores a half-swapped case
    report.intact, report.problems, report.leftovers, report.warnings

`problems` are damage (a changed or missing file, a broken meta.json): repair cannot undo them.
`leftovers` are traces of interrupted work (hidden building/removing folders, temporaries): the
pool is intact with them, and `repair` deletes them. `warnings` are harmless oddities, such as a
manifest that missed the last line of a killed command (the case folders are the truth).
The caller holds the pool lock (shared to look, exclusive to repair).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from VQSegCore.atomic import move_folder, remove_tree
from VQSegCore.pool.journal import cases_in_log, read_entries
from VQSegCore.pool.layout import CASE_DATA_FILES, META_FILE, TEMP_PREFIX, PoolLayout, entry_kind, scratch_case_id, sha256_file
from VQSegCore.pool.reading import case_folder_names
from VQSegCore.pool.records import CaseRecordError, read_case_record


@dataclass
class VerifyReport:
    pool: Path
    cases_checked: int = 0
    problems: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # paths relative to the pool folder
    warnings: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def clean(self) -> bool:
        return not self.problems and not self.leftovers

    def to_dict(self) -> dict:
        return {"pool": str(self.pool), "intact": self.intact, "clean": self.clean, "cases_checked": self.cases_checked,
                "problems": self.problems, "leftovers": self.leftovers, "warnings": self.warnings, "repaired": self.repaired}


def verify_pool(layout: PoolLayout, repair: bool = False, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check the pool; `progress(done, total)` is called after each case (hashing a large pool takes a while)."""
    report = VerifyReport(layout.root)
    if not layout.cases_dir.is_dir():
        report.problems.append("the cases/ folder is missing")
        return report
    _check_scratch_entries(layout, report, repair)
    names = case_folder_names(layout)
    for done, name in enumerate(names, start=1):
        _check_case(layout, name, report, repair)
        if progress is not None:
            progress(done, len(names))
    report.cases_checked = len(names)
    _check_root(layout, report, repair)
    _check_manifest(layout, set(names), report)
    return report


def _check_case(layout: PoolLayout, case_id: str, report: VerifyReport, repair: bool) -> None:
    folder = layout.case_dir(case_id)
    try:
        record = read_case_record(folder)
    except CaseRecordError as problem:
        report.problems.append(f"case {case_id}: {problem}")
        return
    for name, expected in record.sha256.items():
        path = folder / name
        if not path.is_file():
            report.problems.append(f"case {case_id}: {name} is missing")
        elif sha256_file(path) != expected:
            report.problems.append(f"case {case_id}: {name} has changed (sha256 differs from meta.json)")
    for entry in folder.iterdir():
        if entry.name.startswith(TEMP_PREFIX):
            _leftover(layout, entry, report, repair)
        elif entry.name in CASE_DATA_FILES and entry.name not in record.sha256:
            report.problems.append(f"case {case_id}: {entry.name} is present but not recorded in meta.json")
        elif entry.name != META_FILE and entry.name not in record.sha256:
            report.warnings.append(f"case {case_id}: unexpected file {entry.name} (ignored)")


def _check_scratch_entries(layout: PoolLayout, report: VerifyReport, repair: bool) -> None:
    for entry in sorted(layout.cases_dir.iterdir()):
        kind = entry_kind(entry.name)
        if kind == "case":
            continue
        if kind == "unknown":
            report.warnings.append(f"unexpected entry cases/{entry.name} (ignored)")
        elif kind == "replaced" and not _case_exists(layout, entry.name):
            _restore_replaced(layout, entry, report, repair)
        else:
            _leftover(layout, entry, report, repair)


def _restore_replaced(layout: PoolLayout, entry: Path, report: VerifyReport, repair: bool) -> None:
    # A label update was killed between its two renames: the complete previous case is here.
    case_id = scratch_case_id(entry.name)
    if repair:
        move_folder(entry, layout.case_dir(case_id))
        report.repaired.append(f"restored case {case_id} from cases/{entry.name}")
    else:
        report.problems.append(f"case {case_id} is missing; its previous version is in cases/{entry.name} (verify --repair restores it)")


def _case_exists(layout: PoolLayout, scratch_name: str) -> bool:
    case_id = scratch_case_id(scratch_name)
    return case_id is None or layout.case_dir(case_id).is_dir()


def _check_root(layout: PoolLayout, report: VerifyReport, repair: bool) -> None:
    for entry in sorted(layout.root.iterdir()):
        if entry.name.startswith(TEMP_PREFIX):
            _leftover(layout, entry, report, repair)


def _check_manifest(layout: PoolLayout, on_disk: set[str], report: VerifyReport) -> None:
    if not layout.manifest.is_file():
        report.warnings.append("manifest.jsonl is missing (the case folders are intact; the log is not)")
        return
    entries, bad_lines = read_entries(layout.manifest)
    if bad_lines:
        report.warnings.append(f"manifest.jsonl: unreadable line(s) {', '.join(map(str, bad_lines))} (skipped)")
    logged = cases_in_log(entries)
    for case_id in sorted(on_disk - logged):
        report.warnings.append(f"case {case_id} is in the pool but its add is not in manifest.jsonl (an add was interrupted after the case was complete)")
    for case_id in sorted(logged - on_disk):
        report.warnings.append(f"case {case_id} is in manifest.jsonl but not in the pool (a remove was interrupted before it was logged)")


def _leftover(layout: PoolLayout, entry: Path, report: VerifyReport, repair: bool) -> None:
    where = entry.relative_to(layout.root).as_posix()
    if repair:
        remove_tree(entry)
        report.repaired.append(f"deleted {where}")
    else:
        report.leftovers.append(where)
