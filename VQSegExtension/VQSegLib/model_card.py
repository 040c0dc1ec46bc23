"""The class table and version name of the model that made a segmentation, read from its card.

`vqseg segment`'s result names the model folder it used ("model"); that folder holds card.json
(docs/architecture.md §3.5) whose config carries the class table (value, id, name, colour, terminology).
Reading it from the very folder that segmented, instead of asking `models show` beforehand,
means the segments always match the labels, even if another version became active meanwhile.
Pool tables are in the pool's pool.json. Plain JSON: nothing here imports torch, slicer or qt.
"""

import json
import os
from typing import Dict, List

CARD_FILE = "card.json"
POOL_FILE = "pool.json"
_CLASS_FIELDS = ("value", "id", "name", "color", "terminology")


def readJson(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError) as problem:
        raise ValueError(f"cannot read {path}: {problem}") from problem
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def checkedClassTable(classes, where: str) -> List[Dict]:
    """The table as plain dicts with every field segio needs; ValueError naming `where` otherwise."""
    if not isinstance(classes, list) or not classes:
        raise ValueError(f"{where} holds no class table")
    table = []
    for item in classes:
        if not isinstance(item, dict) or "value" not in item or "id" not in item:
            raise ValueError(f"{where}: a class entry lacks its value or id: {item!r}")
        table.append({
            "value": int(item["value"]),
            "id": str(item["id"]),
            "name": str(item.get("name") or item["id"]),
            "color": [float(c) for c in item.get("color", (1.0, 0.0, 0.0))],
            "terminology": str(item.get("terminology", "")),
        })
    return table


def classTableFromCard(card: dict, where: str = "the model card") -> List[Dict]:
    return checkedClassTable((card.get("config") or {}).get("classes"), where)


def modelClassTable(modelFolder: str) -> List[Dict]:
    path = os.path.join(modelFolder, CARD_FILE)
    return classTableFromCard(readJson(path), path)


def poolClassTable(poolFolder: str) -> List[Dict]:
    path = os.path.join(poolFolder, POOL_FILE)
    return checkedClassTable(readJson(path).get("classes"), path)


def modelVersionLabel(modelFolder: str) -> str:
    """'lung-lesion@v0003' for <store>/lung-lesion/v0003; 'lung-lesion@shipped' for Resources/Models/lung-lesion.
    The naming rules' one owner, VQSegCore.model_names, decides (imported when VQSegCore is on sys.path)."""
    from VQSegCore.model_names import version_label

    return version_label(modelFolder)


def classTableJson(classes: List[Dict]) -> str:
    """Compact JSON of a table (kept on the segmentation node, and given to `pool add --classes`)."""
    return json.dumps([{key: item[key] for key in _CLASS_FIELDS if key in item} for item in classes], separators=(",", ":"))


def classTableFromJson(text: str) -> List[Dict]:
    try:
        data = json.loads(text or "")
    except ValueError as problem:
        raise ValueError(f"the stored class table is not JSON: {problem}") from problem
    return checkedClassTable(data, "the segmentation's class table")
