"""Render Resources/UI/VQSeg.ui offscreen for the README (Resources/Screenshots/panel.png). A script, not a test.

Slicer's own widgets are not available outside Slicer, so they are replaced by the nearest Qt
widget before loading (qMRMLNodeComboBox -> QComboBox, ctkCollapsibleButton -> QGroupBox,
ctkPathLineEdit -> QLineEdit, qMRMLWidget -> QWidget), and the panel is filled with sample values
of a fine-tune in progress. Layout, labels, buttons and tooltips are the real .ui file's.

    python3 -m venv /tmp/pyside-venv && /tmp/pyside-venv/bin/pip install pyside6
    QT_QPA_PLATFORM=offscreen /tmp/pyside-venv/bin/python Testing/contract/render_panel.py
"""

import os
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import QApplication, QComboBox, QGroupBox, QLineEdit, QTableWidgetItem, QWidget  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
UI_FILE = REPO / "Resources" / "UI" / "VQSeg.ui"
OUTPUT = REPO / "Resources" / "Screenshots" / "panel.png"
WIDTH = 460

STAND_INS = {"qMRMLWidget": "QWidget", "qMRMLNodeComboBox": "QComboBox", "ctkCollapsibleButton": "QGroupBox",
             "ctkPathLineEdit": "QLineEdit"}
# Properties of the Slicer widgets that the stand-ins do not have.
SLICER_ONLY_PROPERTIES = {"nodeTypes", "showChildNodeTypes", "noneEnabled", "addEnabled", "removeEnabled", "renameEnabled",
                          "noneDisplay", "baseName", "collapsed"}


def standInUi(uiText: str):
    """The .ui with stand-in classes; returns (xml bytes, {node combo name: none text}, collapsed group names)."""
    root = ElementTree.fromstring(uiText)
    noneTexts, collapsed = {}, []
    for widget in root.iter("widget"):
        cls = widget.get("class")
        for prop in list(widget.findall("property")):
            name = prop.get("name")
            if cls == "qMRMLNodeComboBox" and name == "noneDisplay":
                noneTexts[widget.get("name")] = prop.findtext("string")
            if cls == "ctkCollapsibleButton" and name == "collapsed" and prop.findtext("bool") == "true":
                collapsed.append(widget.get("name"))
            if cls == "ctkCollapsibleButton" and name == "text":
                prop.set("name", "title")
            elif name in SLICER_ONLY_PROPERTIES:
                widget.remove(prop)
        widget.set("class", STAND_INS.get(cls, cls))
    for block in ("customwidgets", "connections"):
        for element in root.findall(block):
            root.remove(element)
    return ElementTree.tostring(root, encoding="utf-8"), noneTexts, collapsed


def loadPanel() -> QWidget:
    data, noneTexts, collapsed = standInUi(UI_FILE.read_text(encoding="utf-8"))
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.ReadOnly)
    panel = QUiLoader().load(buffer)
    if panel is None:
        raise RuntimeError("QUiLoader could not load the stand-in .ui")
    panel.noneTexts, panel.collapsedGroups = noneTexts, collapsed
    return panel


def child(panel, cls, name):
    widget = panel.findChild(cls, name)
    if widget is None:
        raise KeyError(name)
    return widget


def fillWithSampleValues(panel) -> None:
    combos = {"inputVolumeSelector": ["LIDC chest CT"], "roiSelector": [panel.noneTexts["roiSelector"]],
              "outputSegmentationSelector": ["LIDC chest CT tumour"], "modelSelector": ["lung-lesion (active: v0002)"],
              "deviceComboBox": ["auto", "cpu", "cuda"]}
    for name, items in combos.items():
        combo = child(panel, QComboBox, name)
        combo.addItems(items)
    child(panel, QLineEdit, "poolNameLineEdit").setText("clinic")
    child(panel, QLineEdit, "homeFolderPathLineEdit").setText("")
    panel.findChild(QWidget, "budgetMinutesSpinBox").setRange(1, 480)
    panel.findChild(QWidget, "budgetMinutesSpinBox").setValue(10)
    panel.findChild(QWidget, "segmentResultLabel").setText("Lung tumour: 14.2 ml. Done in 6.3 s (cuda).")
    panel.findChild(QWidget, "oodWarningLabel").hide()

    table = panel.findChild(QWidget, "poolTable")
    columns = ("Case", "Status", "Source", "Updated", "Edited voxels")
    rows = [("case-0001-3fa9c1", "labelled", "LIDC chest CT", "2026-11-26 07:30", "1204"),
            ("case-0002-91b2e0", "labelled", "Chest CT 2", "2026-11-26 07:52", "356"),
            ("case-0003-0c77d4", "unlabelled", "Chest CT 3", "2026-11-26 08:05", "")]
    table.setColumnCount(len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))
    table.resizeColumnsToContents()
    table.horizontalHeader().setStretchLastSection(True)
    table.setFixedHeight(130)
    panel.findChild(QWidget, "poolSummaryLabel").setText("3 cases: 2 corrected, 1 unlabelled.")

    panel.findChild(QWidget, "finetuneButton").setText("Cancel")
    panel.findChild(QWidget, "segmentButton").setEnabled(False)
    panel.findChild(QWidget, "progressBar").setRange(0, 1000)
    panel.findChild(QWidget, "progressBar").setValue(750)
    panel.findChild(QWidget, "statusLabel").setText("Training: iteration 120, about 2 min left. Loss 0.412, validation Dice 0.800.")

    for name in panel.collapsedGroups:  # a collapsed ctkCollapsibleButton shows only its title
        group = child(panel, QGroupBox, name)
        group.setTitle("\u25b8 " + group.title())
        for widget in group.findChildren(QWidget):
            widget.hide()
        group.setFixedHeight(24)


def main() -> int:
    application = QApplication.instance() or QApplication(sys.argv)
    panel = loadPanel()
    fillWithSampleValues(panel)
    panel.resize(WIDTH, 10)
    panel.adjustSize()
    panel.resize(WIDTH, panel.sizeHint().height())
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    if not panel.grab().save(str(OUTPUT)):
        raise RuntimeError(f"could not write {OUTPUT}")
    print(f"wrote {OUTPUT} ({panel.width()}x{panel.height()})")
    application.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
