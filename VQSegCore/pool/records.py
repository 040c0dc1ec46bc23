"""What a case's meta.json holds (`CaseRecord`), and how much a correction changed (edited voxels).

records:
    A case's record: what its meta.json holds, parsed and checked.

        record = read_case_record(layout.case_dir("case-0007-3fa9c1"))
        record.status            # "labelled" or "unlabelled"
        record.sha256["image.nii.gz"]
        record.summary()         # the short form `vqseg pool list` prints

    meta.json never holds patient-identifying text: the case id is generated, `source_name` is the
    input's base name (or what the user typed), and no DICOM header is copied.

edits:
    How much a clinician changed the model's draft: voxels per class that the correction flipped.

        edited_voxels(label, draft, LUNG_TUMOUR)   # {"lung_tumour": 1234}

    A voxel counts for class v when it is v in exactly one of the two maps (added or removed from v).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from VQSegCore.classes import ClassTable
from VQSegCore.pool.layout import DRAFT_FILE, IMAGE_FILE, LABEL_FILE, META_FILE


# ---- records ---------------------------------------------------------------------------------
META_FORMAT_VERSION = 1
LABELLED = "labelled"
UNLABELLED = "unlabelled"
STATUSES = (LABELLED, UNLABELLED)
# Pools written before the spelling was settled hold the American forms; they are read as these.
LEGACY_STATUSES = {"labeled": LABELLED, "unlabeled": UNLABELLED}


class CaseRecordError(ValueError):
    """meta.json is missing, not JSON, or lacks a field: the case is damaged."""


@dataclass(frozen=True)
class CaseRecord:
    case_id: str
    source_name: str
    added: str  # UTC ISO 8601
    updated: str
    status: str  # LABELLED or UNLABELLED
    draft_model: str | None  # model version that made the draft
    class_values: list[int]  # the pool's label values when the case was stored
    sha256: dict[str, str]  # stored file name → hash
    geometry: dict[str, list]  # size, spacing, origin, direction of the image
    edited_voxels: dict[str, int] | None  # class id → voxels the correction changed (label vs draft)
    history: list[dict[str, Any]]  # one entry per add and label update
    folder: Path | None = field(default=None, compare=False)

    @property
    def has_label(self) -> bool:
        return LABEL_FILE in self.sha256

    @property
    def has_draft(self) -> bool:
        return DRAFT_FILE in self.sha256

    @property
    def files(self) -> list[str]:
        return list(self.sha256)

    def path(self, file_name: str) -> Path:
        if self.folder is None:
            raise ValueError(f"case {self.case_id} has no folder yet")
        return self.folder / file_name

    @property
    def image_path(self) -> Path:
        return self.path(IMAGE_FILE)

    @property
    def label_path(self) -> Path | None:
        return self.path(LABEL_FILE) if self.has_label else None

    @property
    def draft_path(self) -> Path | None:
        return self.path(DRAFT_FILE) if self.has_draft else None

    def to_meta(self) -> dict[str, Any]:
        return {
            "format_version": META_FORMAT_VERSION,
            "case_id": self.case_id,
            "source_name": self.source_name,
            "added": self.added,
            "updated": self.updated,
            "status": self.status,
            "draft_model": self.draft_model,
            "classes": list(self.class_values),
            "sha256": dict(self.sha256),
            "geometry": dict(self.geometry),
            "edited_voxels": dict(self.edited_voxels) if self.edited_voxels is not None else None,
            "history": [dict(entry) for entry in self.history],
        }

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.case_id,
            "status": self.status,
            "source_name": self.source_name,
            "added": self.added,
            "updated": self.updated,
            "draft_model": self.draft_model,
            "edited_voxels": self.edited_voxels,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything in meta.json plus where the files are (for `vqseg pool show`)."""
        return {**self.to_meta(), "folder": str(self.folder) if self.folder else None,
                "files": {name: str(self.path(name)) for name in self.sha256} if self.folder else {}}

    @classmethod
    def from_meta(cls, data: object, folder: Path | None = None) -> "CaseRecord":
        if not isinstance(data, dict):
            raise CaseRecordError("meta.json is not a JSON object")
        version = data.get("format_version")
        if not isinstance(version, int) or version > META_FORMAT_VERSION:
            raise CaseRecordError(f"meta.json has format_version {version!r}; this VQSeg reads up to {META_FORMAT_VERSION}")
        _require(data, {"case_id": str, "source_name": str, "added": str, "updated": str, "status": str,
                        "classes": list, "sha256": dict, "geometry": dict, "history": list})
        data = {**data, "status": LEGACY_STATUSES.get(data["status"], data["status"])}
        if data["status"] not in STATUSES:
            raise CaseRecordError(f"meta.json status {data['status']!r} is not one of {', '.join(STATUSES)}")
        if IMAGE_FILE not in data["sha256"]:
            raise CaseRecordError(f"meta.json lists no hash for {IMAGE_FILE}")
        if (data["status"] == LABELLED) != (LABEL_FILE in data["sha256"]):
            raise CaseRecordError(f"meta.json status {data['status']!r} does not match the presence of {LABEL_FILE}")
        return cls(
            case_id=data["case_id"],
            source_name=data["source_name"],
            added=data["added"],
            updated=data["updated"],
            status=data["status"],
            draft_model=data.get("draft_model"),
            class_values=[int(v) for v in data["classes"]],
            sha256={str(k): str(v) for k, v in data["sha256"].items()},
            geometry=data["geometry"],
            edited_voxels=data.get("edited_voxels"),
            history=list(data["history"]),
            folder=folder,
        )


def read_case_record(folder: Path) -> CaseRecord:
    """Parse `folder/meta.json`; CaseRecordError when it is missing or malformed."""
    meta = folder / META_FILE
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise CaseRecordError(f"{META_FILE} is missing") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CaseRecordError(f"{META_FILE} is not valid JSON ({error})") from error
    record = CaseRecord.from_meta(data, folder)
    if record.case_id != folder.name:
        raise CaseRecordError(f"{META_FILE} names case {record.case_id!r}, but the folder is {folder.name!r}")
    return record


def _require(data: dict, fields: dict[str, type]) -> None:
    for name, kind in fields.items():
        if name not in data:
            raise CaseRecordError(f"meta.json lacks {name!r}")
        if not isinstance(data[name], kind):
            raise CaseRecordError(f"meta.json field {name!r} is not a {kind.__name__}")


# ---- edits -----------------------------------------------------------------------------------
def edited_voxels(label: np.ndarray, draft: np.ndarray, classes: ClassTable) -> dict[str, int]:
    return {c.id: int(np.count_nonzero((label == c.value) != (draft == c.value))) for c in classes.classes}
