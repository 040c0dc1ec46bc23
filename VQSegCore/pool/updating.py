"""Give a case a (new) corrected label: unlabelled → labelled, or a re-correction.

    with PoolLock(layout.lock_file, timeout_s):
        record = update_case_label(layout, info, find_case(layout, case_id), label, reference)

The case is rebuilt beside the old one (image and draft hard-linked, new label written, meta.json
with the history entry), then swapped in: old folder → `.replaced-<id>-…`, new folder → `<id>`.
A crash between the two renames leaves the complete old case in `.replaced-…`, which
`vqseg pool verify --repair` moves back. The previous label's hash stays in the history.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk

from VQSegCore.pool.case_folder import building_folder, seal_case_folder, write_case_files
from VQSegCore.pool.clock import utc_now
from VQSegCore.atomic import link_or_copy, move_folder, remove_tree
from VQSegCore.pool.edits import edited_voxels
from VQSegCore.pool.layout import DRAFT_FILE, IMAGE_FILE, LABEL_FILE, REPLACED_PREFIX, PoolLayout
from VQSegCore.pool.manifest import append_entry
from VQSegCore.pool.pool_file import PoolInfo
from VQSegCore.pool.records import LABELLED, CaseRecord


def update_case_label(layout: PoolLayout, info: PoolInfo, current: CaseRecord, label: np.ndarray, reference: sitk.Image) -> CaseRecord:
    case_id = current.case_id
    now = utc_now()
    case_dir = layout.case_dir(case_id)
    with building_folder(layout, case_id) as building:
        for name in (IMAGE_FILE, DRAFT_FILE):
            if name in current.sha256:
                link_or_copy(case_dir / name, building / name)
        (new_hash,) = write_case_files(building, None, info.classes, reference, label=label).values()
        draft = sitk.GetArrayFromImage(sitk.ReadImage(str(case_dir / DRAFT_FILE))) if current.has_draft else None
        record = replace(
            current,
            updated=now,
            status=LABELLED,
            sha256={**current.sha256, LABEL_FILE: new_hash},
            edited_voxels=edited_voxels(label, draft, info.classes) if draft is not None else None,
            history=[*current.history, {"time": now, "op": "update_label", "status": LABELLED, "label_sha256": new_hash,
                                        "previous_label_sha256": current.sha256.get(LABEL_FILE)}],
            folder=case_dir,
        )
        seal_case_folder(building, record)
        replaced = layout.scratch_dir(REPLACED_PREFIX, case_id)
        move_folder(case_dir, replaced)
        try:
            move_folder(building, case_dir)
        except BaseException:
            move_folder(replaced, case_dir)
            raise
    remove_tree(replaced)
    append_entry(layout.manifest, {"op": "update", "case_id": case_id, "status": LABELLED})
    return record
