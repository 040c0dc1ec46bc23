"""What the module remembers on a segmentation node, as node attributes (saved with the scene).

  VQSeg.Classes     the class table the segments were built from (JSON): export uses the same
                    ordered table, so label values never drift (docs/architecture.md §3.3)
  VQSeg.DraftPath   the kept copy of the model's untouched label map (drafts.py)
  VQSeg.DraftModel  the model version that made it, e.g. lung-lesion@v0003
  VQSeg.Pool        the pool that holds this case, and
  VQSeg.PoolCase    its case id there: "Add to pool" then updates that case instead of adding one
  VQSeg.UncertaintyNodeID  the uncertainty overlay of the last run (replaced by the next one)

Works on any object with SetAttribute/GetAttribute; no slicer import.
"""

from typing import Dict, List, Optional, Tuple

from VQSegLib.model_card import classTableFromJson, classTableJson

CLASSES = "VQSeg.Classes"
DRAFT_PATH = "VQSeg.DraftPath"
DRAFT_MODEL = "VQSeg.DraftModel"
POOL = "VQSeg.Pool"
POOL_CASE = "VQSeg.PoolCase"
UNCERTAINTY_NODE_ID = "VQSeg.UncertaintyNodeID"


def _get(node, name: str) -> str:
    return node.GetAttribute(name) or ""


def _clear(node, name: str) -> None:
    node.RemoveAttribute(name)


def recordClasses(node, classes: List[Dict]) -> None:
    node.SetAttribute(CLASSES, classTableJson(classes))


def classesOf(node) -> Optional[List[Dict]]:
    """The class table recorded on the node, or None when VQSeg did not make this segmentation."""
    text = _get(node, CLASSES)
    return classTableFromJson(text) if text else None


def recordDraft(node, draftPath: str, draftModel: str) -> None:
    """A fresh model result: remember its kept draft and the model version that made it."""
    node.SetAttribute(DRAFT_PATH, draftPath)
    node.SetAttribute(DRAFT_MODEL, draftModel)


def draftOf(node) -> Tuple[str, str]:
    """(draft path, model version), "" where unknown."""
    return _get(node, DRAFT_PATH), _get(node, DRAFT_MODEL)


def forgetDraft(node) -> None:
    _clear(node, DRAFT_PATH)


def recordPoolCase(node, pool: str, caseId: str) -> None:
    node.SetAttribute(POOL, pool)
    node.SetAttribute(POOL_CASE, caseId)


def forgetPoolCase(node) -> None:
    """The segmentation now shows another image: it is a new case, not the pool case it was."""
    for name in (POOL, POOL_CASE):
        _clear(node, name)


def poolCaseOf(node) -> Tuple[str, str]:
    """(pool, case id) of the case this segmentation belongs to, "" where it is not in a pool."""
    return _get(node, POOL), _get(node, POOL_CASE)


def recordUncertaintyNodeId(node, nodeId: str) -> None:
    node.SetAttribute(UNCERTAINTY_NODE_ID, nodeId)


def uncertaintyNodeIdOf(node) -> str:
    return _get(node, UNCERTAINTY_NODE_ID)


def forgetUncertaintyNodeId(node) -> None:
    _clear(node, UNCERTAINTY_NODE_ID)
