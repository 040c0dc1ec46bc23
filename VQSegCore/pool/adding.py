"""Add a case: build it under a hidden name, rename it into cases/, then log it.

    with PoolLock(layout.lock_file, timeout_s):
        record = add_case(layout, info, inputs, draft_model="lung-default/v0003")

The caller reads and checks the inputs first (`read_case_inputs`), so nothing here can fail on
bad input, and holds the exclusive pool lock, so the new case number is unique.
"""

from __future__ import annotations

from dataclasses import replace

from VQSegCore.io.geometry import Geometry
from VQSegCore.pool.case_folder import building_folder, seal_case_folder, write_case_files
from VQSegCore.pool.clock import utc_now
from VQSegCore.atomic import move_folder
from VQSegCore.pool.edits import edited_voxels
from VQSegCore.pool.inputs import CaseInputs
from VQSegCore.pool.layout import LABEL_FILE, PoolLayout
from VQSegCore.pool.listing import next_case_id
from VQSegCore.pool.manifest import append_entry
from VQSegCore.pool.pool_file import PoolInfo
from VQSegCore.pool.records import LABELLED, UNLABELLED, CaseRecord


def add_case(layout: PoolLayout, info: PoolInfo, inputs: CaseInputs, draft_model: str | None = None) -> CaseRecord:
    case_id = next_case_id(layout)
    now = utc_now()
    status = LABELLED if inputs.label is not None else UNLABELLED
    with building_folder(layout, case_id) as building:
        hashes = write_case_files(building, inputs.image, info.classes, inputs.image, label=inputs.label, draft=inputs.draft)
        record = CaseRecord(
            case_id=case_id,
            source_name=inputs.source_name,
            added=now,
            updated=now,
            status=status,
            draft_model=draft_model,
            class_values=info.classes.values,
            sha256=hashes,
            geometry=Geometry.of(inputs.image).to_dict(),
            edited_voxels=_edits(inputs, info),
            history=[{"time": now, "op": "add", "status": status, "label_sha256": hashes.get(LABEL_FILE)}],
        )
        seal_case_folder(building, record)
        move_folder(building, layout.case_dir(case_id))
    append_entry(layout.manifest, {"op": "add", "case_id": case_id, "status": status})
    return replace(record, folder=layout.case_dir(case_id))


def _edits(inputs: CaseInputs, info: PoolInfo) -> dict[str, int] | None:
    if inputs.label is None or inputs.draft is None:
        return None
    return edited_voxels(inputs.label, inputs.draft, info.classes)
