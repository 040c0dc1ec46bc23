"""The model's untouched label maps ("drafts"), kept until their case joins the pool.

`pool add --draft` stores the draft beside the correction so the pool knows what the clinician
changed. The segment run's own folder is deleted when the run ends, so the label it wrote is
copied to <VQSeg home>/drafts/ first; the segmentation node remembers the copy's path (a node
attribute, saved with the scene). No slicer or qt import.
"""

import os
import shutil
import uuid

DRAFTS_FOLDER = "drafts"


def draftsFolder(homeFolder: str) -> str:
    return os.path.join(homeFolder, DRAFTS_FOLDER)


def keepDraft(labelPath: str, homeFolder: str) -> str:
    """Copy a label map into the drafts folder under a fresh name; returns the copy's path."""
    folder = draftsFolder(homeFolder)
    os.makedirs(folder, exist_ok=True)
    suffix = ".nii.gz" if labelPath.lower().endswith(".nii.gz") else os.path.splitext(labelPath)[1]
    target = os.path.join(folder, f"draft-{uuid.uuid4().hex[:12]}{suffix}")
    temporary = os.path.join(folder, f".copying-{os.path.basename(target)}")
    shutil.copyfile(labelPath, temporary)
    os.replace(temporary, target)  # a reader never sees half a draft
    return target


def discardDraft(draftPath: str, homeFolder: str) -> None:
    """Delete a kept draft (once the pool holds its own copy). Files outside the drafts folder are never touched."""
    if not draftPath:
        return
    folder = os.path.abspath(draftsFolder(homeFolder))
    path = os.path.abspath(draftPath)
    if os.path.dirname(path) == folder and os.path.isfile(path):
        os.remove(path)
