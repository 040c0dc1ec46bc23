"""The module's real VQSegWidget on the real Resources/UI/VQSeg.ui, through PySide6 (offscreen).

Signal signatures and property names are checked by use here, not only by name as in
Testing/contract/test_ui_contract.py.

VQSeg.py is imported as in test_parameter_node.py: Slicer's own parameterNodeWrapper (with its GUI
connectors), i18n and ScriptedLoadableModule are read from a Slicer clone (slicer_source.py), on top of
the slicer-core wheel, with a real vtkMRMLScene. Its `qt`, `ctk` and `slicer.qMRML*` come from
qt_shim.py: PySide6 made to behave like PythonQt, plus small stand-ins for the Slicer and CTK widgets.
Their signals, slots and properties are compared with Slicer's headers in the clone.
slicer.util.loadUI and childWidgetVariables are the wheel's own. The panel is built as Slicer builds it:
VQSegWidget(parent), setup(), enter().

The logic's actions that would start the VQSegCore command line are replaced by recorders. A run
therefore stays busy until the test calls the recorded onCompleted, as the run's poll timer would.
A Qt warning, a loader problem, or an exception in a slot or VTK observer (PySide6 and VTK only print
those) fails the test.

Skips without PySide6, without a usable Qt platform (QT_QPA_PLATFORM defaults to offscreen here) or
without the Slicer clone. A few seconds.
"""

import ast
import importlib
import os
import re
import subprocess
import sys
import traceback
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
for _module in ("PySide6.QtCore", "PySide6.QtWidgets", "PySide6.QtUiTools"):  # ImportError too: a system library may be missing
    pytest.importorskip(_module, reason=f"needs {_module} (pip install PySide6-Essentials into .venv-slicer)", exc_type=ImportError)
from PySide6 import QtCore, QtWidgets  # noqa: E402

import numpy as np  # noqa: E402
import shiboken6  # noqa: E402
import slicer  # noqa: E402
import slicer_source  # noqa: E402
import vtk  # noqa: E402

import qt_shim  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VQSEG_PY = REPO / "VQSegExtension" / "VQSeg.py"
UI_FILE = REPO / "Resources" / "UI" / "VQSeg.ui"
SLICER_REF = "v5.12.3"  # the wheel's release; the GUI connectors are the same in v5.10.0
# Each parameter that the .ui binds (its SlicerParameterName) and the widget that shows it.
BINDINGS = {"inputVolume": "inputVolumeSelector", "roi": "roiSelector", "device": "deviceComboBox",
            "segmentation": "outputSegmentationSelector", "showUncertainty": "showUncertaintyCheckBox",
            "poolName": "poolNameLineEdit", "budgetMinutes": "budgetMinutesSpinBox"}
# The buttons that _updateGuiState disables while any run is going.
BLOCKED_WHILE_BUSY = ("refreshPoolButton", "refreshModelsButton", "activateVersionButton", "rollbackButton",
                      "exportVersionButton", "importVersionButton", "modelSelector")
# What the offscreen platform says about itself when a window is shown: not the module's doing.
PLATFORM_MESSAGES = ("This plugin does not support propagateSizeHints()",)
MODELS = {"event": "result", "models": {"lung-lesion": [
    {"version": "v0001", "status": "retired", "active": False},
    {"version": "v0002", "status": "active", "active": True, "metrics": {"held_out_dice": 0.81}},
]}}


def platformProblem():
    """Why no QApplication can start here, or None."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform.startswith(("xcb", "wayland")) and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return f"QT_QPA_PLATFORM={platform} but there is no display: unset it or use offscreen"
    plugins = Path(QtCore.QLibraryInfo.path(QtCore.QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    name = platform.split(":")[0] or "offscreen"
    if not list(plugins.glob(f"libq{name}.*")) and not list(plugins.glob(f"q{name}.*")):
        return f"PySide6 has no {name!r} platform plugin in {plugins}"
    return None


if platformProblem():
    pytest.skip(platformProblem(), allow_module_level=True)


# ---- reading the .ui, VQSeg.py and Slicer's headers -----------------------------------------------

def uiClasses():
    """{widget name: class} of every widget in the .ui."""
    return {w.get("name"): w.get("class") for w in ElementTree.parse(UI_FILE).iter("widget")}


def connectedSignals(source):
    """[(widget name, signature)] of each `self.ui.<widget>.connect("<signature>", ...)` in the source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
                and isinstance(node.func.value, ast.Attribute) and isinstance(node.func.value.value, ast.Attribute)
                and node.func.value.value.attr == "ui" and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.func.value.attr, node.args[0].value))
    return found


def headerApi(text):
    """({signals}, {slots}, {properties}) declared in a Qt header, as normalized signatures / names."""
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    properties = set(re.findall(r"Q_PROPERTY\s*\(\s*[\w:<>]+\s*\*?\s*(\w+)", text))
    signals, slots, section = set(), set(), None
    for line in text.splitlines():
        label = re.match(r"\s*(public|protected|private)?\s*(signals|Q_SIGNALS|slots|Q_SLOTS)?\s*:\s*$", line)
        if label and (label.group(1) or label.group(2)):
            kind = label.group(2) or ""
            section = "signals" if "SIGNALS" in kind.upper() else "slots" if "SLOTS" in kind.upper() else None
            continue
        declaration = re.match(r"\s*(?:Q_INVOKABLE\s+)?(?:virtual\s+)?[\w:<>]+\s*\*?\s*(\w+)\s*\(([^)]*)\)", line)
        if section and declaration:
            arguments = []
            for argument in filter(None, (a.split("=")[0].strip() for a in declaration.group(2).split(","))):
                tokens = re.findall(r"[A-Za-z_][\w:]*|\*", re.sub(r"\bconst\b|&", " ", argument))
                if len([t for t in tokens if t != "*"]) > 1 and tokens[-1] != "*":
                    tokens = tokens[:-1]  # the parameter's name
                arguments.append(" ".join(tokens).replace(" *", "*"))
            signature = qt_shim.normalizedSignature(f"{declaration.group(1)}({','.join(arguments)})")
            (signals if section == "signals" else slots).add(signature)
    return signals, slots, properties


def ownApi(cls):
    """What a stand-in declares itself (not inherited): (signals, slots, properties); PyObject twins left out."""
    metaObject = cls.staticMetaObject
    signals, slots = set(), set()
    for i in range(metaObject.methodOffset(), metaObject.methodCount()):
        method = metaObject.method(i)
        signature = bytes(method.methodSignature().data()).decode()
        if "PyObject" in signature:
            continue
        if method.methodType() == QtCore.QMetaMethod.MethodType.Signal:
            signals.add(signature)
        elif method.methodType() == QtCore.QMetaMethod.MethodType.Slot:
            slots.add(signature)
    properties = {metaObject.property(i).name() for i in range(metaObject.propertyOffset(), metaObject.propertyCount())}
    return signals, slots, properties


# ---- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vqseg(tmp_path_factory):
    """VQSeg.py imported against Slicer's Python at one release, with qt_shim's qt, ctk and slicer.qMRML*."""
    refs = slicer_source.refs()
    ref = SLICER_REF if SLICER_REF in refs else refs[0]
    folder = slicer_source.extract(slicer_source.sourceRepository(), ref, tmp_path_factory.mktemp("slicer-source"))
    with qt_shim.installed(tmp_path_factory.mktemp("qt-settings")), slicer_source.slicerPython(folder):
        assert sys.modules["qt"].QSpinBox is qt_shim.pythonQtClass(QtWidgets.QSpinBox)
        sys.modules.pop("VQSeg", None)
        try:
            module = importlib.import_module("VQSeg")
            assert module.qt is sys.modules["qt"] and module.ctk is sys.modules["ctk"]
            yield module
        finally:
            sys.modules.pop("VQSeg", None)


@pytest.fixture
def problems(monkeypatch):
    """Qt warnings, loader problems and exceptions raised in slots or VTK observers: must stay empty."""
    found = []

    def onMessage(kind, context, message):
        if kind not in (QtCore.QtMsgType.QtDebugMsg, QtCore.QtMsgType.QtInfoMsg) and message not in PLATFORM_MESSAGES:
            found.append(f"Qt {kind.name}: {message}")

    def onException(kind, value, trace):
        found.append("".join(traceback.format_exception(kind, value, trace)))

    previous = QtCore.qInstallMessageHandler(onMessage)
    monkeypatch.setattr(sys, "excepthook", onException)
    monkeypatch.setattr(qt_shim, "problems", [])
    yield found
    QtCore.qInstallMessageHandler(previous)
    found.extend(qt_shim.problems)
    assert not found, "\n".join(found)


class RecordedLogic:
    """Records the logic's actions that would start a CLI run; each returns a run that stays RUNNING."""

    ACTIONS = ("segment", "finetune", "addToPool", "listPool", "reopenCase", "listModels", "activateVersion", "rollback",
               "exportVersion", "importVersion", "deviceInfo")

    def __init__(self, logic, monkeypatch):
        self.calls = []
        for name in self.ACTIONS:
            monkeypatch.setattr(logic, name, self._recorder(name))
        monkeypatch.setattr(logic, "cancel", lambda: self.calls.append(("cancel", (), {})))
        monkeypatch.setattr(logic, "isBusy", lambda: False)
        monkeypatch.setattr(logic, "dependenciesLookInstalled", lambda: True)
        monkeypatch.setattr(logic, "openInSegmentEditor", lambda *a, **k: self.calls.append(("openInSegmentEditor", a, k)))

    def _recorder(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return types.SimpleNamespace(state="running")
        return record

    def names(self):
        return [name for name, _, _ in self.calls]

    def last(self, name):
        return next((args, kwargs) for called, args, kwargs in reversed(self.calls) if called == name)

    def complete(self, name, outcome, state="done", errorMessage=""):
        """What the run's poll timer does at the end: the action's onCompleted(run, outcome)."""
        run = types.SimpleNamespace(state=state, errorMessage=errorMessage, errorHint="", logLines=[], result=outcome)
        self.last(name)[1]["onCompleted"](run, outcome if state == "done" else None)


@pytest.fixture
def panel(vqseg, scene, problems, monkeypatch):
    """The module panel as Slicer builds it: VQSegWidget(parent), setup(), shown, entered; models listed."""
    parent = slicer.qSlicerScriptedLoadableModuleWidget()
    widget = vqseg.VQSegWidget(parent)
    widget.setup()
    logic = RecordedLogic(widget.logic, monkeypatch)
    parent.show()
    parent.enter()
    widget.enter()
    assert logic.names() == ["listModels"]  # entering lists the models in the background
    logic.complete("listModels", MODELS)
    yield types.SimpleNamespace(widget=widget, ui=widget.ui, parent=parent, logic=logic, scene=scene, vqseg=vqseg)
    widget.exit()
    parent.exit()
    widget.cleanup()
    shiboken6.delete(parent)


def addVolume(scene, name="CT", labelmap=False):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    image = vtk.vtkImageData()
    image.SetDimensions(8, 6, 4)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    node.SetAndObserveImageData(image)
    node.SetSpacing(2.0, 2.0, 5.0)
    node.SetOrigin(-10.0, 20.0, 30.0)
    return node


def vqsegSegmentation(scene, name="tumour"):
    """A segmentation as VQSeg's Segment leaves it: one segment, the class table recorded."""
    from VQSegLib import segmentation_tags

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.GetSegmentation().AddEmptySegment("lung_tumour", "Lung tumour", [0.86, 0.24, 0.24])
    segmentation_tags.recordClasses(node, [{"value": 1, "id": "lung_tumour", "name": "Lung tumour",
                                            "color": [0.86, 0.24, 0.24], "terminology": ""}])
    return node


# ---- (1) signal signatures ------------------------------------------------------------------------

def test_every_signal_vqseg_connects_exists_on_the_class_the_ui_gives_that_widget():
    classes = uiClasses()
    source = VQSEG_PY.read_text(encoding="utf-8")
    connected = connectedSignals(source)
    assert len(connected) == source.count(".connect(") - 1 >= 18  # all but slicer.app.connect("startupCompleted()", ...)
    assert ("roiSelector", "nodeAddedByUser(vtkMRMLNode*)") in connected
    for widgetName, signature in connected:
        cls = qt_shim.widgetClass(classes[widgetName])
        assert qt_shim.normalizedSignature(signature) in qt_shim.classInfo(cls).signals, (widgetName, classes[widgetName], signature)
    for connection in ElementTree.parse(UI_FILE).iter("connection"):  # the .ui's own connections
        sender = qt_shim.widgetClass(classes[connection.findtext("sender")]).staticMetaObject
        receiver = qt_shim.widgetClass(classes[connection.findtext("receiver")]).staticMetaObject
        assert sender.indexOfSignal(connection.findtext("signal")) >= 0, connection.findtext("signal")
        assert receiver.indexOfSlot(connection.findtext("slot")) >= 0, connection.findtext("slot")


def test_the_stand_ins_declare_only_what_slicers_headers_declare(tmp_path):
    repository = slicer_source.sourceRepository()
    if not repository.exists():
        pytest.skip(f"no Slicer source at {repository}: set {slicer_source.SOURCE_ENV} to a git clone of Slicer/Slicer")
    checked = 0
    for ref in slicer_source.refs():
        for cls in (qt_shim.qMRMLWidget, qt_shim.qMRMLNodeComboBox, qt_shim.qMRMLSegmentationShow3DButton,
                    qt_shim.qSlicerScriptedLoadableModuleWidget, qt_shim.qSlicerModuleManager):
            real = [set(), set(), set()]
            for header in cls.SLICER_HEADERS:
                shown = subprocess.run(["git", "-C", str(repository), "show", f"{ref}:{header}"], capture_output=True, text=True)
                if shown.returncode:
                    pytest.skip(f"{ref}:{header} is not in the Slicer clone")
                for part, names in zip(real, headerApi(shown.stdout)):
                    part.update(names)
            signals, slots, properties = ownApi(cls)
            assert signals <= real[0], (ref, cls.__name__, signals - real[0])
            assert slots <= real[1], (ref, cls.__name__, slots - real[1])
            assert properties <= real[2], (ref, cls.__name__, properties - real[2])
            checked += len(signals) + len(slots) + len(properties)
    assert checked >= 20 * len(slicer_source.refs())


def test_the_header_reader_finds_a_declaration_and_not_a_misspelling():
    header = """class X : public QWidget {
      Q_PROPERTY(QStringList nodeTypes READ nodeTypes WRITE setNodeTypes)
    public slots:
      virtual void setMRMLScene(vtkMRMLScene* scene);
      void setCurrentNodeID(const QString& nodeID);
    signals:
      void currentNodeChanged(vtkMRMLNode* node);
      void currentNodeChanged(bool validNode);
    protected slots:
      void onToggled(bool toggled = true);
    protected:
      void other(int);
    };"""
    signals, slots, properties = headerApi(header)
    assert signals == {"currentNodeChanged(vtkMRMLNode*)", "currentNodeChanged(bool)"}
    assert slots == {"setMRMLScene(vtkMRMLScene*)", "setCurrentNodeID(QString)", "onToggled(bool)"}
    assert properties == {"nodeTypes"}


def doctored(vqseg, old, new):
    """VQSeg.py with one text replaced, as a module of its own (same folder, so its Resources are found)."""
    source = VQSEG_PY.read_text(encoding="utf-8")
    assert source.count(old) == 1, old
    module = types.ModuleType("VQSegDoctored")
    module.__file__ = str(VQSEG_PY)
    sys.modules[module.__name__] = module
    try:
        exec(compile(source.replace(old, new), str(VQSEG_PY), "exec"), module.__dict__)
    except BaseException:
        sys.modules.pop(module.__name__, None)
        raise
    return module


@pytest.mark.parametrize("old, new, error, match", [
    ('segmentButton.connect("clicked(bool)"', 'segmentButton.connect("clikced(bool)"', AttributeError, r"no signal 'clikced\(bool\)'"),
    ('roiSelector.connect("nodeAddedByUser(vtkMRMLNode*)"', 'roiSelector.connect("nodeAddedByUser(vtkMRMLScene*)"',
     AttributeError, r"no signal 'nodeAddedByUser\(vtkMRMLScene\*\)'"),
    ("self.ui.modelSelector.enabled = not busy", "self.ui.modelSelector.enable = not busy", AttributeError,
     "no Qt property or attribute 'enable'"),
    ("def onPoolCaseDoubleClicked(self, row: int, column: int)", "def onPoolCaseDoubleClicked(self, row: int, column: int, item)",
     TypeError, r"needs 3 arguments; cellDoubleClicked\(int,int\) gives 2"),
])
def test_a_misspelt_signal_or_property_or_a_slot_of_the_wrong_arity_fails(vqseg, scene, problems, old, new, error, match):
    module = doctored(vqseg, old, new)
    parent = slicer.qSlicerScriptedLoadableModuleWidget()
    widget = module.VQSegWidget(parent)
    try:
        with pytest.raises(error, match=match):
            widget.setup()
    finally:
        widget.removeObservers()  # setup() stopped half-way: leave nothing observing the scene
        sys.modules.pop(module.__name__, None)
        shiboken6.delete(parent)


# ---- (2) the panel and its parameter bindings ----------------------------------------------------

def test_the_panel_is_built_from_the_real_ui(panel):
    ui, classes = panel.ui, uiClasses()
    for name, className in classes.items():
        if name == "VQSeg":
            continue
        widget = getattr(ui, name)
        assert type(widget).__name__ == className, name
        # A property of the .ui that the class lacks would have become a dynamic property.
        dynamic = [bytes(p.data()).decode() for p in widget.dynamicPropertyNames()]
        assert [p for p in dynamic if not p.startswith("_q_")] in ([], ["SlicerParameterName"]), name  # _q_: Qt's own
    assert {ui.__dict__[w].property("SlicerParameterName"): w for w in BINDINGS.values()} == BINDINGS
    for selector in (ui.inputVolumeSelector, ui.roiSelector, ui.outputSegmentationSelector):
        assert selector.mrmlScene() is panel.scene and selector.enabled  # through the .ui's mrmlSceneChanged connection
    assert ui.roiSelector.noneDisplay == "Whole volume (lungs found automatically)" and not ui.inputVolumeSelector.showChildNodeTypes
    assert ui.homeFolderPathLineEdit.filters == sys.modules["ctk"].ctkPathLineEdit.Dirs
    assert ui.modelsCollapsibleButton.collapsed and not ui.inputsCollapsibleButton.collapsed
    assert not ui.progressBar.visible and not ui.oodWarningLabel.visible and ui.segmentButton.visible
    assert ui.poolTable.columnCount == len(panel.vqseg.result_text.POOL_COLUMNS)
    # The models listed on entering fill the selector and the versions table.
    assert [ui.modelSelector.itemData(i) for i in range(ui.modelSelector.count)] == ["", "lung-lesion", "lung-lesion@v0001",
                                                                                      "lung-lesion@v0002"]
    assert ui.modelVersionsTable.rowCount == 2 and ui.modelVersionsTable.item(1, 0).text() == "v0002"
    assert ui.statusLabel.text == "Models listed."


def test_connect_gui_binds_the_parameter_node_both_ways(panel):
    ui, parameters = panel.ui, panel.widget._parameterNode
    guis = list(parameters._parameterGUIs.values())
    assert len(guis) == 1 and {name: connector.widget() for name, connector in guis[0].items()} == {
        name: getattr(ui, widgetName) for name, widgetName in BINDINGS.items()}

    spin = ui.budgetMinutesSpinBox  # int with WithinRange(1, 480)
    assert (spin.value, spin.minimum, spin.maximum) == (10, 1, 480)
    spin.setValue(45)
    assert parameters.budgetMinutes == 45
    parameters.budgetMinutes = 90
    assert spin.value == 90
    spin.setValue(1000)  # the spin box keeps it in range
    assert parameters.budgetMinutes == 480

    combo = ui.deviceComboBox  # str with Choice(auto, cpu, cuda)
    assert [combo.itemText(i) for i in range(combo.count)] == ["auto", "cpu", "cuda"] and combo.currentText == "auto"
    combo.currentIndex = 1
    assert parameters.device == "cpu" and parameters.parameterNode.GetParameter("device") == "cpu"
    parameters.device = "cuda"
    assert combo.currentIndex == 2

    box = ui.showUncertaintyCheckBox
    assert not box.checked
    box.click()
    assert parameters.showUncertainty is True
    parameters.showUncertainty = False
    assert not box.checked

    ui.poolNameLineEdit.text = "clinic"
    assert parameters.poolName == "clinic"
    parameters.poolName = "/data/pool"
    assert ui.poolNameLineEdit.text == "/data/pool"


def test_node_selectors_are_bound_and_the_ct_selector_hides_labelmaps(panel):
    ui, parameters, scene = panel.ui, panel.widget._parameterNode, panel.scene
    first, second = addVolume(scene, "first"), addVolume(scene, "second")
    labelmap = addVolume(scene, "labels", labelmap=True)
    assert ui.inputVolumeSelector.nodes() == [first, second]
    ui.inputVolumeSelector.setCurrentNode(second)
    assert parameters.inputVolume is second
    parameters.inputVolume = first
    assert ui.inputVolumeSelector.currentNode() is first and ui.inputVolumeSelector.currentNodeID == first.GetID()
    parameters.inputVolume = labelmap  # scripts may set it; the selector cannot show it
    assert ui.inputVolumeSelector.currentNode() is None

    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    parameters.segmentation = segmentation
    assert ui.outputSegmentationSelector.currentNode() is segmentation
    ui.outputSegmentationSelector.setCurrentNode(None)  # "Create new segmentation"
    assert parameters.segmentation is None


def test_a_scene_close_unbinds_and_the_new_parameter_node_is_bound_again(panel):
    ui, scene = panel.ui, panel.scene
    old = panel.widget._parameterNode
    ui.budgetMinutesSpinBox.setValue(30)
    scene.Clear(False)  # StartCloseEvent, EndCloseEvent: the panel is entered, so it binds the parameter node again
    new = panel.widget._parameterNode
    assert new is not None and new is not old
    assert not old._parameterGUIs and len(new._parameterGUIs) == 1  # unbound at the start of the close, bound at its end
    assert ui.budgetMinutesSpinBox.value == new.budgetMinutes
    ui.budgetMinutesSpinBox.setValue(20)
    assert new.budgetMinutes == 20


# ---- (3) the buttons follow the state ------------------------------------------------------------

def test_segment_is_enabled_only_with_an_input_volume(panel):
    ui, parameters = panel.ui, panel.widget._parameterNode
    assert parameters.inputVolume is None
    assert not ui.segmentButton.enabled and ui.segmentButton.toolTip == "Select an input volume"
    assert ui.finetuneButton.enabled  # the pool is "default"
    assert not ui.correctButton.enabled and not ui.show3DButton.enabled
    assert not ui.addToPoolButton.enabled and not ui.addUnlabelledButton.enabled
    assert all(getattr(ui, name).enabled for name in BLOCKED_WHILE_BUSY)

    volume = addVolume(panel.scene)
    ui.inputVolumeSelector.setCurrentNode(volume)
    assert parameters.inputVolume is volume
    assert ui.segmentButton.enabled and ui.segmentButton.toolTip.startswith("Segment the input volume")
    ui.inputVolumeSelector.setCurrentNode(None)
    assert not ui.segmentButton.enabled
    ui.poolNameLineEdit.text = ""
    assert not ui.finetuneButton.enabled


def test_while_a_segment_run_is_busy_the_run_buttons_are_disabled_and_segment_cancels(panel):
    ui, logic, parameters, scene = panel.ui, panel.logic, panel.widget._parameterNode, panel.scene
    volume = addVolume(scene)
    parameters.inputVolume = volume
    ui.deviceComboBox.currentIndex = 1
    ui.showUncertaintyCheckBox.click()

    ui.segmentButton.click()
    args, kwargs = logic.last("segment")
    assert args == (volume,) and kwargs["device"] == "cpu" and kwargs["withUncertainty"] is True
    assert kwargs["roiNode"] is None and kwargs["segmentationNode"] is None and kwargs["model"] == ""
    assert kwargs["waitForCompletion"] is False
    assert ui.segmentButton.text == "Cancel" and ui.segmentButton.enabled
    assert ui.finetuneButton.text == "Fine-tune" and not ui.finetuneButton.enabled
    assert not any(getattr(ui, name).enabled for name in BLOCKED_WHILE_BUSY)
    assert ui.progressBar.visible and (ui.progressBar.minimum, ui.progressBar.maximum) == (0, 0)

    kwargs["onEvent"](None, {"event": "progress", "stage": "infer", "done": 1, "total": 4})
    assert ui.progressBar.maximum == 1000 and ui.statusLabel.text

    ui.segmentButton.click()  # now Cancel
    assert logic.names()[-1] == "cancel" and ui.statusLabel.text == "Cancelling..."
    assert logic.names().count("segment") == 1

    segmentation = vqsegSegmentation(scene)
    outcome = panel.vqseg.SegmentOutcome(segmentation, None, "", "1 tumour, 2.0 ml", False, {})
    logic.complete("segment", outcome)
    assert parameters.segmentation is segmentation and ui.outputSegmentationSelector.currentNode() is segmentation
    assert ui.segmentButton.text == "Segment" and ui.segmentButton.enabled and ui.finetuneButton.enabled
    assert all(getattr(ui, name).enabled for name in BLOCKED_WHILE_BUSY)
    assert not ui.progressBar.visible and ui.segmentResultLabel.text == "1 tumour, 2.0 ml"
    assert ui.correctButton.enabled and ui.show3DButton.enabled and ui.addToPoolButton.enabled
    assert not ui.addUnlabelledButton.enabled  # no draft recorded
    assert ui.statusLabel.text == "Segmentation done."
    assert "Segmentation done." in ui.logTextEdit.toPlainText()


def test_while_a_fine_tune_is_busy_segment_is_disabled(panel):
    ui, logic, parameters = panel.ui, panel.logic, panel.widget._parameterNode
    parameters.inputVolume = addVolume(panel.scene)
    ui.budgetMinutesSpinBox.setValue(25)
    ui.poolNameLineEdit.text = "clinic"

    ui.finetuneButton.click()
    args, kwargs = logic.last("finetune")
    assert args == ("clinic",) and kwargs["minutes"] == 25 and kwargs["modelName"] == "lung-lesion" and kwargs["device"] == "auto"
    assert ui.finetuneButton.text == "Cancel" and ui.finetuneButton.enabled
    assert not ui.segmentButton.enabled and not ui.addToPoolButton.enabled
    assert not any(getattr(ui, name).enabled for name in BLOCKED_WHILE_BUSY)

    kwargs["onEvent"](None, {"event": "progress", "stage": "train", "time_left_s": 1125.0})  # a quarter of the 25 min used
    assert (ui.progressBar.maximum, ui.progressBar.value) == (1000, 250)

    logic.complete("finetune", None, state="failed", errorMessage="out of memory\ndetails")
    assert ui.statusLabel.text == "Failed: out of memory"
    assert ui.segmentButton.enabled and ui.finetuneButton.text == "Fine-tune"


def test_a_run_that_cannot_start_leaves_the_panel_idle(panel, monkeypatch):
    ui, parameters = panel.ui, panel.widget._parameterNode
    parameters.inputVolume = addVolume(panel.scene)

    def refuse(*args, **kwargs):
        raise ValueError("The input volume is transformed: harden its transform, or clear the ROI.")

    monkeypatch.setattr(panel.widget.logic, "segment", refuse)
    ui.segmentButton.click()
    assert ui.segmentButton.text == "Segment" and ui.segmentButton.enabled and not ui.progressBar.visible
    assert ui.statusLabel.text.startswith("The input volume is transformed")


# ---- the other connected slots run -----------------------------------------------------------------

def test_a_region_created_in_the_selector_is_centred_on_the_ct(panel):
    ui, parameters = panel.ui, panel.widget._parameterNode
    volume = addVolume(panel.scene)
    parameters.inputVolume = volume
    roiNode = ui.roiSelector.addNode()  # the selector's "Create new ROI"
    assert parameters.roi is roiNode  # selected upon creation, through the binding
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    np.testing.assert_allclose(roiNode.GetCenter(), [(bounds[2 * a] + bounds[2 * a + 1]) / 2 for a in range(3)])
    np.testing.assert_allclose(roiNode.GetSize(), panel.vqseg.roi.NEW_ROI_SIZE_MM)
    assert ui.statusLabel.text.startswith("Drag the ROI's handles")


def test_choosing_a_model_sets_the_parameter_and_the_combo_follows_it(panel):
    ui, parameters = panel.ui, panel.widget._parameterNode
    ui.modelSelector.currentIndex = 3
    assert parameters.modelName == "lung-lesion@v0002"
    parameters.modelName = "other@v0009"  # not listed (chosen in an earlier session): added and shown
    assert ui.modelSelector.currentIndex == 4 and ui.modelSelector.itemData(4) == "other@v0009"
    ui.modelSelector.currentIndex = 0
    assert parameters.modelName == ""


def test_the_home_folder_field_and_the_pool_table_reach_the_logic(panel, tmp_path):
    ui, logic, widget = panel.ui, panel.logic, panel.widget
    ui.homeFolderPathLineEdit.currentPath = str(tmp_path)
    assert widget.logic.chosenHomeFolder() == str(tmp_path)  # kept in the (test's) Qt settings
    assert ui.statusLabel.text == f"Pools and models are read from {tmp_path} (press Refresh)."
    assert ui.modelVersionsTable.rowCount == 0

    ui.poolNameLineEdit.text = "clinic"
    ui.refreshPoolButton.click()
    assert logic.last("listPool")[0] == ("clinic",)
    logic.complete("listPool", {"event": "result", "count": 1, "labelled": 1, "unlabelled": 0, "unreadable": [],
                                "cases": [{"id": "case-0001", "status": "labelled", "source": "CT"}]})
    assert ui.poolTable.rowCount == 1 and ui.poolTable.item(0, 0).text() == "case-0001"
    ui.poolTable.cellDoubleClicked.emit(0, 2)  # what a double click on the row emits
    assert logic.last("reopenCase")[0] == ("clinic", "case-0001")
    assert not ui.segmentButton.enabled and not ui.refreshPoolButton.enabled  # busy reopening

    volume, segmentation = addVolume(panel.scene), vqsegSegmentation(panel.scene)
    logic.complete("reopenCase", panel.vqseg.ReopenedCase("case-0001", volume, segmentation))
    assert ui.inputVolumeSelector.currentNode() is volume and ui.outputSegmentationSelector.currentNode() is segmentation
    ui.correctButton.click()
    assert logic.last("openInSegmentEditor")[0] == (segmentation, volume)
