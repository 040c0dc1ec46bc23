"""The dataset spec: one JSON file listing cases for `vqseg train` and `vqseg evaluate`.

```json
{
  "name": "lung-pilot",                          (optional)
  "classes": [{"value": 1, "id": "lung_tumour", ...}],   (optional; default: the lung tumour table)
  "cases": [
    {"id": "case-001", "image": "images/001.nii.gz", "label": "labels/001.nii.gz", "split": "train"},
    {"id": "case-002", "image": "images/002.nii.gz", "split": "train"},
    {"id": "case-003", "image": "/data/003.nrrd", "label": "/data/003-seg.nrrd", "split": "test"}
  ]
}
```

Relative paths are relative to the spec file's folder, so a dataset folder can be moved as a whole.
A case id names files (the prediction of case `<id>` is `<id>.nii.gz`), so it is a plain file name.
Loading checks the structure and that every file exists, but reads no image: a spec may list
hundreds of volumes. Every problem is an InputError (exit 2) naming the spec file and the case.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from VQSegCore.atomic import write_json_atomic
from VQSegCore.classes import LUNG_TUMOUR, ClassTable
from VQSegCore.errors import InputError

SPLITS = ("train", "val", "test")
_TOP_KEYS = ("name", "classes", "cases")
_CASE_KEYS = ("id", "image", "label", "split")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Case:
    id: str
    image: Path  # absolute once loaded
    split: str  # one of SPLITS
    label: Path | None = None  # None: unlabelled (still useful for semi-supervised training)

    @property
    def labelled(self) -> bool:
        return self.label is not None


@dataclass
class DatasetSpec:
    entries: list[Case]
    classes: ClassTable = LUNG_TUMOUR
    name: str | None = None
    path: Path | None = field(default=None, compare=False)  # the file it was loaded from, for messages

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DatasetSpec":
        """Read and check a spec file; relative paths resolve against its folder."""
        path = Path(path)
        data = _read_json(path)
        where = f"dataset spec {path}"
        if not isinstance(data, dict):
            raise InputError(f"{where}: the top level must be a JSON object with a \"cases\" list", _FORMAT_HINT)
        _refuse_unknown_keys(data, _TOP_KEYS, where)
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise InputError(f"{where}: \"name\" must be a string", _FORMAT_HINT)
        classes = class_table_from_json(data["classes"], where) if "classes" in data else LUNG_TUMOUR
        entries = _parse_cases(data.get("cases"), _absolute(path).parent, where)
        return cls(entries, classes, name, path)

    def cases(self, split: str | None = None) -> list[Case]:
        """All cases, or those of one split, in file order."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        return [case for case in self.entries if split is None or case.split == split]

    def labelled(self, split: str | None = None) -> list[Case]:
        return [case for case in self.cases(split) if case.labelled]

    def require_labelled(self, split: str | None = None) -> list[Case]:
        """The labelled cases of `split` (or of all splits); InputError when there are none."""
        found = self.labelled(split)
        if not found:
            which = f"the {split!r} split" if split else "the spec"
            having = sorted({case.split for case in self.entries if case.labelled})
            hint = f"splits with labelled cases: {', '.join(having)}" if having else "add a \"label\" to at least one case"
            raise InputError(f"dataset spec {self.path or '(unsaved)'}: {which} has no labelled case ({len(self.cases(split))} cases, none with a label)", hint)
        return found

    def to_dict(self, relative_to: str | os.PathLike | None = None) -> dict:
        """The JSON form; paths inside `relative_to` (a folder) are written relative to it."""
        folder = _absolute(relative_to) if relative_to is not None else None
        data: dict = {"name": self.name} if self.name is not None else {}
        data["classes"] = self.classes.to_list()
        data["cases"] = [_case_to_dict(case, folder) for case in self.entries]
        return data

    def save(self, path: str | os.PathLike) -> Path:
        """Write the spec atomically; files under its folder are stored relative to it."""
        path = Path(path)
        write_json_atomic(path, self.to_dict(relative_to=_absolute(path).parent))
        return path


_FORMAT_HINT = 'a spec is {"name": ..., "classes": [...], "cases": [{"id": ..., "image": ..., "label": ..., "split": "train|val|test"}]}'


def class_table_from_json(items: object, where: str) -> ClassTable:
    """A ClassTable from its JSON list form (`ClassTable.to_list()`), or InputError naming `where`."""
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InputError(f"{where}: \"classes\" must be a list of objects like {{\"value\": 1, \"id\": \"lung_tumour\"}}", _FORMAT_HINT)
    try:
        return ClassTable.from_list(items)
    except (KeyError, TypeError, ValueError) as problem:
        detail = f"missing field {problem}" if isinstance(problem, KeyError) else str(problem)
        raise InputError(f"{where}: bad class table: {detail}", "each class needs a \"value\" (1..255) and an \"id\"; values and ids must be unique") from problem


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise InputError(f"dataset spec {path}: no such file", "check the path")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as problem:
        raise InputError(f"dataset spec {path}: not a text file", _FORMAT_HINT) from problem
    except json.JSONDecodeError as problem:
        raise InputError(f"dataset spec {path}: not valid JSON (line {problem.lineno}, column {problem.colno}: {problem.msg})", _FORMAT_HINT) from problem
    except OSError as problem:
        raise InputError(f"dataset spec {path}: cannot be read ({problem.strerror})", "check the file's permissions") from problem


def _parse_cases(items: object, folder: Path, where: str) -> list[Case]:
    if not isinstance(items, list) or not items:
        raise InputError(f"{where}: needs a non-empty \"cases\" list", _FORMAT_HINT)
    cases, seen = [], set()
    for number, item in enumerate(items, start=1):
        case = _parse_case(item, number, folder, where)
        if case.id in seen:
            raise InputError(f"{where}: case id {case.id!r} appears more than once", "give every case a unique id")
        seen.add(case.id)
        cases.append(case)
    return cases


def _parse_case(item: object, number: int, folder: Path, where: str) -> Case:
    if not isinstance(item, dict):
        raise InputError(f"{where}: case #{number} is not an object", _FORMAT_HINT)
    case_id = item.get("id")
    if not isinstance(case_id, str) or not _CASE_ID.match(case_id):
        raise InputError(
            f"{where}: case #{number} has id {case_id!r}; an id is a plain file name (letters, digits, '.', '_', '-')",
            "ids name prediction files such as <id>.nii.gz",
        )
    what = f"{where}: case {case_id!r}"
    _refuse_unknown_keys(item, _CASE_KEYS, what)
    split = item.get("split")
    if split not in SPLITS:
        raise InputError(f"{what}: split {split!r} is not one of {', '.join(SPLITS)}", _FORMAT_HINT)
    image = _existing_path(item.get("image"), folder, what, "image")
    label = _existing_path(item["label"], folder, what, "label") if item.get("label") is not None else None
    return Case(case_id, image, split, label)


def _existing_path(value: object, folder: Path, what: str, role: str) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(f"{what}: \"{role}\" must be a path", _FORMAT_HINT)
    path = Path(value).expanduser()
    path = _absolute(path if path.is_absolute() else folder / path)
    if not path.exists():
        raise InputError(f"{what}: {role} file {path} does not exist", "fix the path; relative paths are relative to the spec file's folder")
    return path


def _refuse_unknown_keys(data: dict, allowed: tuple[str, ...], what: str) -> None:
    # A misspelt key ("lable") would otherwise silently turn a labelled case into an unlabelled one.
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InputError(f"{what}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}", f"allowed keys: {', '.join(allowed)}")


def _case_to_dict(case: Case, folder: Path | None) -> dict:
    data = {"id": case.id, "image": _portable(case.image, folder)}
    if case.label is not None:
        data["label"] = _portable(case.label, folder)
    data["split"] = case.split
    return data


def _portable(path: Path, folder: Path | None) -> str:
    """Relative to `folder` when the file lies inside it (the dataset moves as a whole), else absolute."""
    path = _absolute(path)
    if folder is not None and path.is_relative_to(folder):
        return path.relative_to(folder).as_posix()
    return str(path)


def _absolute(path: str | os.PathLike) -> Path:
    # Not resolve(): a spec reached through a symlinked folder keeps the paths its user sees.
    return Path(os.path.abspath(path))
