"""Build a case folder under a hidden name, seal it, and publish it with one rename.

    with building_folder(layout, case_id) as building:
        hashes = write_case_files(building, inputs.image, classes, label=inputs.label)
        seal_case_folder(building, record)           # meta.json, then fsync of every file
        move_folder(building, layout.case_dir(case_id))

If anything fails (or the run is cancelled) before the rename, the hidden folder is deleted; if
the process is killed, the hidden folder stays behind, is never listed as a case, and
`vqseg pool verify --repair` deletes it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import SimpleITK as sitk

from VQSegCore.atomic import write_json_atomic
from VQSegCore.classes import ClassTable
from VQSegCore.io.write import write_image, write_label_map
from VQSegCore.atomic import fsync_folder_tree, remove_tree
from VQSegCore.pool.hashing import sha256_file
from VQSegCore.pool.layout import BUILDING_PREFIX, DRAFT_FILE, IMAGE_FILE, LABEL_FILE, META_FILE, PoolLayout
from VQSegCore.pool.records import CaseRecord


@contextlib.contextmanager
def building_folder(layout: PoolLayout, case_id: str) -> Iterator[Path]:
    """A new, empty hidden folder inside cases/; deleted again unless it was moved away."""
    folder = layout.scratch_dir(BUILDING_PREFIX, case_id)
    folder.mkdir()
    try:
        yield folder
    except BaseException:
        remove_tree(folder)
        raise
    remove_tree(folder)  # nothing left when it was published; a leftover if the caller stopped early


def write_case_files(
    folder: Path,
    image: sitk.Image | None,
    classes: ClassTable,
    reference: sitk.Image,
    label: np.ndarray | None = None,
    draft: np.ndarray | None = None,
) -> dict[str, str]:
    """Write the image (unless None: already linked in) and label maps as NIfTI; return their hashes."""
    written = []
    if image is not None:
        write_image(image, folder / IMAGE_FILE)
        written.append(IMAGE_FILE)
    for array, name in ((label, LABEL_FILE), (draft, DRAFT_FILE)):
        if array is not None:
            write_label_map(array, reference, folder / name, classes)
            written.append(name)
    return {name: sha256_file(folder / name) for name in written}


def seal_case_folder(folder: Path, record: CaseRecord) -> None:
    write_json_atomic(folder / META_FILE, record.to_meta())
    fsync_folder_tree(folder)
