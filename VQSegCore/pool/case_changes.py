"""Every change to a pool's cases: the inputs read and checked, a case folder built under a
hidden name and published with one rename (add), rebuilt and swapped (label update), or removed.

inputs:
    Read and check everything a new case needs before the pool is touched.

        inputs = read_case_inputs("ct.nrrd", classes, label="corrected.nii.gz", draft="model.nii.gz")
        inputs.image, inputs.label, inputs.draft, inputs.source_name

    Every problem (missing file, label on another grid, values outside the class table) raises
    InputError here, so a bad `add` writes nothing at all.

case_folder:
    Build a case folder under a hidden name, seal it, and publish it with one rename.

        with building_folder(layout, case_id) as building:
            hashes = write_case_files(building, inputs.image, classes, label=inputs.label)
            seal_case_folder(building, record)           # meta.json, then fsync of every file
            move_folder(building, layout.case_dir(case_id))

    If anything fails (or the run is cancelled) before the rename, the hidden folder is deleted; if
    the process is killed, the hidden folder stays behind, is never listed as a case, and
    `vqseg pool verify --repair` deletes it.

adding:
    Add a case: build it under a hidden name, rename it into cases/, then log it.

        with PoolLock(layout.lock_file, timeout_s):
            record = add_case(layout, info, inputs, draft_model="lung-default/v0003")

    The caller reads and checks the inputs first (`read_case_inputs`), so nothing here can fail on
    bad input, and holds the exclusive pool lock, so the new case number is unique.

updating:
    Give a case a (new) corrected label: unlabelled → labelled, or a re-correction.

        with PoolLock(layout.lock_file, timeout_s):
            record = update_case_label(layout, info, find_case(layout, case_id), label, reference)

    The case is rebuilt beside the old one (image and draft hard-linked, new label written, meta.json
    with the history entry), then swapped in: old folder → `.replaced-<id>-…`, new folder → `<id>`.
    A crash between the two renames leaves the complete old case in `.replaced-…`, which
    `vqseg pool verify --repair` moves back. The previous label's hash stays in the history.

removing:
    Remove a case: rename it aside in one step, log it, then delete the files.

        with PoolLock(layout.lock_file, timeout_s):
            remove_case(layout, find_case(layout, case_id))

    After the rename the case is gone for every reader; a crash before the delete leaves a
    `.removing-<id>-…` folder that `vqseg pool verify --repair` deletes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import SimpleITK as sitk

from VQSegCore.atomic import fsync_folder_tree, link_or_copy, move_folder, remove_tree, write_json_atomic
from VQSegCore.classes import ClassTable, unexpected_values
from VQSegCore.errors import InputError
from VQSegCore.io.geometry import Geometry
from VQSegCore.io.read import read_label_map, read_volume
from VQSegCore.io.write import write_image, write_label_map
from VQSegCore.pool.journal import append_entry
from VQSegCore.pool.layout import (BUILDING_PREFIX, DRAFT_FILE, IMAGE_FILE, LABEL_FILE, META_FILE, REMOVING_PREFIX,
                                   REPLACED_PREFIX, PoolLayout, sha256_file, utc_now)
from VQSegCore.pool.pool_file import PoolInfo
from VQSegCore.pool.privacy import anonymous_image, source_name_for
from VQSegCore.pool.reading import next_case_id
from VQSegCore.pool.records import LABELLED, UNLABELLED, CaseRecord, edited_voxels


# ---- inputs ----------------------------------------------------------------------------------
@dataclass
class CaseInputs:
    image: sitk.Image  # without metadata
    source_name: str
    classes: ClassTable  # the table the label values were checked against
    label: np.ndarray | None = None  # [z, y, x] uint8, on the image's grid
    draft: np.ndarray | None = None


def read_case_inputs(
    image_path: str | os.PathLike,
    classes: ClassTable,
    label: str | os.PathLike | None = None,
    draft: str | os.PathLike | None = None,
    source_name: str | None = None,
) -> CaseInputs:
    for path, role in ((image_path, "image"), (label, "label"), (draft, "draft")):
        if path is not None and not Path(path).exists():
            raise InputError(f"{role} {path}: no such file or folder", "check the path")
    volume = read_volume(image_path)
    name = source_name_for(volume, source_name)
    return CaseInputs(
        image=anonymous_image(volume.image),
        source_name=name,
        classes=classes,
        label=read_label_values(label, volume.image, classes, "label") if label is not None else None,
        draft=read_label_values(draft, volume.image, classes, "draft") if draft is not None else None,
    )


def read_label_values(path: str | os.PathLike, reference: sitk.Image, classes: ClassTable, role: str) -> np.ndarray:
    """A label map on `reference`'s grid whose values all belong to `classes`, as a [z, y, x] uint8 array."""
    image = read_label_map(path, reference=reference, what=role, reference_name="the case's image",
                           hint="export the segmentation with the case's image as reference geometry")
    values = sitk.GetArrayFromImage(image)
    unknown = unexpected_values(values, classes)
    if unknown:
        known = ", ".join(f"{c.value} = {c.id}" for c in classes.classes)
        shown = ", ".join(map(str, unknown[:10])) + (", …" if len(unknown) > 10 else "")
        raise InputError(f"{role} {path}: label values {shown} are not in the pool's class table (0 = background, {known})",
                         "export the segmentation with the pool's classes, or create the pool with --classes")
    return values.astype(np.uint8)


# ---- case folder -----------------------------------------------------------------------------
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


# ---- adding ----------------------------------------------------------------------------------
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


# ---- updating --------------------------------------------------------------------------------
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


# ---- removing --------------------------------------------------------------------------------
def remove_case(layout: PoolLayout, record: CaseRecord) -> None:
    aside = layout.scratch_dir(REMOVING_PREFIX, record.case_id)
    move_folder(layout.case_dir(record.case_id), aside)
    append_entry(layout.manifest, {"op": "remove", "case_id": record.case_id, "status": record.status})
    remove_tree(aside)
