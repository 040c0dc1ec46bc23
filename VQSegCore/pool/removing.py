"""Remove a case: rename it aside in one step, log it, then delete the files.

    with PoolLock(layout.lock_file, timeout_s):
        remove_case(layout, find_case(layout, case_id))

After the rename the case is gone for every reader; a crash before the delete leaves a
`.removing-<id>-…` folder that `vqseg pool verify --repair` deletes.
"""

from __future__ import annotations

from VQSegCore.atomic import move_folder, remove_tree
from VQSegCore.pool.layout import REMOVING_PREFIX, PoolLayout
from VQSegCore.pool.manifest import append_entry
from VQSegCore.pool.records import CaseRecord


def remove_case(layout: PoolLayout, record: CaseRecord) -> None:
    aside = layout.scratch_dir(REMOVING_PREFIX, record.case_id)
    move_folder(layout.case_dir(record.case_id), aside)
    append_entry(layout.manifest, {"op": "remove", "case_id": record.case_id, "status": record.status})
    remove_tree(aside)
