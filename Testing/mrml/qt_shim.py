"""PySide6 dressed as PythonQt, with small PySide6 stand-ins for the Slicer and CTK widgets that
Resources/UI/VQSeg.ui names, so that VQSeg.py's real VQSegWidget runs on the real .ui under the
offscreen platform (used by test_widget_pyside.py).

What Slicer's PythonQt does and PySide6 does not, and how it is mapped here:

  properties   A Qt property is a Python attribute (`button.enabled = False`, `combo.currentIndex`) and
               wins over a method of the same name. PythonQtStyle reads and writes such names through the
               meta-object. Setting a public name that is neither a Qt property nor an attribute of the
               class raises AttributeError. PythonQt would quietly add a Python attribute, and nothing on
               the screen would change. The shim is stricter on purpose, so that a misspelt property fails.
  name         `widget.name` is the objectName; slicer.util.childWidgetVariables relies on it.
  connect      `widget.connect("clicked(bool)", slot)`: the signature must be a signal of the object's
               meta-object, normalized as Qt does it. The slot gets as many leading arguments as it takes,
               because PythonQt drops the rest. A slot that needs more arguments than the signal gives
               is refused when it is connected.
  QUiLoader    qt.QUiLoader builds every widget as a PythonQt-style class. The Qt widget classes in
               PYTHONQT_WIDGETS are the classes of the same name in `qt`, so that guiConnectors.py's
               `type(widget) == qt.QSpinBox` holds. The custom widgets are the stand-ins below.

Signals that carry VTK objects: PySide6 cannot emit an argument of a type Qt does not know (such as
vtkMRMLNode*). So each of them is declared twice:
  - with Slicer's real signature, so that the meta-object, QUiLoader's <connections> and string connects
    see the name Slicer has;
  - as a PyObject twin, which is the one emitted.
Connecting the real signature by string connects the twin. The loader also wires each <connection>
of the .ui whose signal carries a VTK object through its twin. Qt has already checked the connection
itself when loading: a misspelt one prints a warning, and the test turns that warning into a failure.

Each stand-in declares only the signals, slots and properties that VQSeg.py, the .ui and
guiConnectors.py use. SLICER_HEADERS names the Slicer headers that declare them, and the test checks
them against those headers in the Slicer clone. The CTK ones follow CTK's ctkPathLineEdit.h and
ctkCollapsibleButton.h, which are not in the clone.
"""

import contextlib
import inspect
import sys
import types
import xml.etree.ElementTree as ElementTree

import vtk
from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets
from PySide6.QtCore import Property, QObject, Signal, Slot

# Qt widget classes whose `qt.<name>` is the PythonQt-style class the loader builds: what the .ui uses,
# and what guiConnectors.py compares with `type(widget) == qt.<name>`. Only leaf classes, so that
# `isinstance(widget, qt.<base>)` still holds for widgets that PySide6 creates itself.
PYTHONQT_WIDGETS = ("QCheckBox", "QComboBox", "QDoubleSpinBox", "QLabel", "QLineEdit", "QPlainTextEdit", "QProgressBar",
                    "QPushButton", "QSlider", "QSpinBox", "QTableWidget", "QTextEdit")
# Argument types that PySide6 converts. Anything else with a '*' is a VTK object and goes through the PyObject twin.
_ARGUMENT_TYPES = {"bool": bool, "int": int, "double": float, "QString": str}
_PYSIDE_MODULES = ("PySide6", "shiboken6")
problems = []  # what QUiLoader could not do: a class it could not build (it builds a plain QWidget), a connection it could not wire


def _text(byteArray) -> str:
    return bytes(byteArray.data()).decode()


def normalizedSignature(signature: str) -> str:
    return _text(QtCore.QMetaObject.normalizedSignature(signature))


def splitSignature(signature: str):
    """"cellDoubleClicked(int,int)" -> ("cellDoubleClicked", ["int", "int"])."""
    name, _, arguments = normalizedSignature(signature).partition("(")
    arguments = arguments.rstrip(")")
    return name, [argument for argument in arguments.split(",") if argument]


class _ClassInfo:
    """What PythonQtStyle needs to know about a class, computed once per class."""

    def __init__(self, cls):
        metaObject = cls.staticMetaObject
        pythonNames = set()
        for klass in cls.__mro__:  # names that a Python class in the MRO defines (the stand-ins' own Property objects)
            if klass is not object and not klass.__module__.startswith(_PYSIDE_MODULES):
                pythonNames.update(vars(klass))
        allProperties = {metaObject.property(i).name() for i in range(metaObject.propertyCount())}
        self.qtProperties = allProperties - pythonNames  # read and written through QObject.property/setProperty
        self.signals = {_text(metaObject.method(i).methodSignature()) for i in range(metaObject.methodCount())
                        if metaObject.method(i).methodType() == QtCore.QMetaMethod.MethodType.Signal}


_classInfos = {}


def classInfo(cls) -> _ClassInfo:
    info = _classInfos.get(cls)
    if info is None:
        info = _classInfos[cls] = _ClassInfo(cls)
    return info


def _slotArity(slot):
    """(required, accepted) positional arguments of a Python callable; accepted None for *args or unknown."""
    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):  # a builtin or a Qt slot: give it everything
        return 0, None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(1 for p in positional if p.default is p.empty)
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return required, None
    return required, len(positional)


class PythonQtStyle:
    """Mixin for QObject classes: attribute access, `name` and string connects as in PythonQt."""

    def __getattribute__(self, name):
        if name[:1] != "_":
            if name in classInfo(type(self)).qtProperties:
                return QObject.property(self, name)
            if name == "name":
                return QObject.objectName(self)
            if name in _PYTHONQT_METHODS:  # PySide6 would answer with QObject's own connect/disconnect
                return types.MethodType(_PYTHONQT_METHODS[name], self)
        return super().__getattribute__(name)

    def __setattr__(self, name, value):
        if name[:1] != "_":
            cls = type(self)
            if name in classInfo(cls).qtProperties:
                if not QObject.setProperty(self, name, value):
                    raise TypeError(f"{cls.__name__}.{name} = {value!r}: Qt refused the value (read-only property or wrong type)")
                return
            if name == "name":
                QObject.setObjectName(self, value)
                return
            if not hasattr(cls, name):
                raise AttributeError(f"{cls.__name__} has no Qt property or attribute {name!r} "
                                     f"(in Slicer, PythonQt would store it as a Python attribute and the widget would not change)")
        super().__setattr__(name, value)

    def _signalInstance(self, signature: str):
        """The bound PySide6 signal for a C++ signature string; AttributeError if the class has no such signal."""
        cls = type(self)
        normalized = normalizedSignature(signature)
        signals = classInfo(cls).signals
        if normalized not in signals:
            ownSignals = sorted(s for s in signals if "PyObject" not in s)
            raise AttributeError(f"{cls.__name__} has no signal {normalized!r} (its signals: {', '.join(ownSignals)})")
        name, arguments = splitSignature(normalized)
        types_ = []
        for argument in arguments:
            if argument in _ARGUMENT_TYPES:
                types_.append(_ARGUMENT_TYPES[argument])
            elif argument.endswith("*"):
                types_.append(object)  # a VTK object: the PyObject twin
            else:
                raise NotImplementedError(f"qt_shim: no Python type for the argument {argument!r} of {normalized}")
        twin = f"{name}({','.join('PyObject' if t is object else a for t, a in zip(types_, arguments))})"
        if twin not in signals:
            raise AttributeError(f"{cls.__name__}.{normalized} carries a VTK object but has no PyObject twin to emit it")
        signal = getattr(self, name)
        if not types_:
            return signal, 0
        return signal[types_[0] if len(types_) == 1 else tuple(types_)], len(types_)

    def connect(self, signature, slot):
        """PythonQt's `object.connect("signal(args)", callable)`."""
        if not isinstance(signature, str) or not callable(slot):
            raise TypeError("qt_shim: only PythonQt's connect(\"signal(args)\", callable) form is supported")
        signal, count = self._signalInstance(signature)
        required, accepted = _slotArity(slot)
        if required > count:
            raise TypeError(f"{getattr(slot, '__qualname__', slot)} needs {required} arguments; "
                            f"{normalizedSignature(signature)} gives {count}")
        passed = count if accepted is None else min(accepted, count)

        def pythonQtSlot(*arguments):
            return slot(*arguments[:passed])

        connections = self.__dict__.setdefault("_pythonQtConnections", {})
        connections.setdefault((normalizedSignature(signature), slot), []).append(pythonQtSlot)
        signal.connect(pythonQtSlot)
        return True

    def disconnect(self, signature, slot):
        """PythonQt's `object.disconnect("signal(args)", callable)`."""
        signal, _ = self._signalInstance(signature)
        wrappers = self.__dict__.get("_pythonQtConnections", {}).get((normalizedSignature(signature), slot))
        if not wrappers:
            return False
        signal.disconnect(wrappers.pop())
        return True


_PYTHONQT_METHODS = {"connect": PythonQtStyle.connect, "disconnect": PythonQtStyle.disconnect}
_pythonQtClasses = {}


def pythonQtClass(base):
    """The PythonQt-style subclass of a PySide6 widget class (one per class, named like it)."""
    cls = _pythonQtClasses.get(base)
    if cls is None:
        cls = _pythonQtClasses[base] = type(base.__name__, (PythonQtStyle, base), {"__module__": __name__})
    return cls


#
# Stand-ins for the Slicer and CTK classes (only what VQSeg.py, the .ui and guiConnectors.py use)
#


def _storedProperty(typeName, attribute, default, onChange=None):
    """A Qt property kept in a Python attribute (a Q_PROPERTY with READ and WRITE in the real class)."""

    def getter(self):
        return self.__dict__.get(attribute, default)

    def setter(self, value):
        old = getter(self)
        self.__dict__[attribute] = list(value) if typeName == "QStringList" else value
        if onChange is not None and old != value:
            onChange(self, value)

    return Property(typeName, getter, setter)


class qMRMLWidget(PythonQtStyle, QtWidgets.QWidget):
    """The .ui's top-level class: setMRMLScene emits mrmlSceneChanged, which the .ui connects to the selectors."""

    SLICER_HEADERS = ("Libs/MRML/Widgets/qMRMLWidget.h",)
    mrmlSceneChanged = Signal((object,), ("vtkMRMLScene*",))

    def mrmlScene(self):
        return self.__dict__.get("_scene")

    @Slot("vtkMRMLScene*")
    def setMRMLScene(self, scene):
        if scene is self.mrmlScene():
            return
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)


class qMRMLNodeComboBox(PythonQtStyle, QtWidgets.QWidget):
    """A node selector: lists the scene's nodes of nodeTypes (not hidden from editors), holds the current one.

    As in qMRMLNodeComboBox.cxx: choosing a node that it does not list makes the current node None;
    currentNodeChanged is emitted only when the current node changes; addNode() creates a node of the
    first type, selects it (selectNodeUponCreation) and emits nodeAddedByUser; setMRMLScene enables
    the widget only with a scene. It does not follow the scene: a removed current node reads as None
    but does not emit, and no node is picked automatically when noneEnabled is false.
    """

    SLICER_HEADERS = ("Libs/MRML/Widgets/qMRMLNodeComboBox.h",)
    currentNodeChanged = Signal((object,), ("vtkMRMLNode*",))
    currentNodeIDChanged = Signal(str)
    nodeAddedByUser = Signal((object,), ("vtkMRMLNode*",))

    nodeTypes = _storedProperty("QStringList", "_nodeTypes", [])
    showChildNodeTypes = _storedProperty(bool, "_showChildNodeTypes", True)
    noneEnabled = _storedProperty(bool, "_noneEnabled", False)
    addEnabled = _storedProperty(bool, "_addEnabled", True)
    removeEnabled = _storedProperty(bool, "_removeEnabled", True)
    renameEnabled = _storedProperty(bool, "_renameEnabled", False)
    noneDisplay = _storedProperty(str, "_noneDisplay", "None")
    selectNodeUponCreation = _storedProperty(bool, "_selectNodeUponCreation", True)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._current = None
        self.setEnabled(False)  # qMRMLNodeComboBoxPrivate::init: enabled only with a scene

    def mrmlScene(self):
        return self._scene

    def lists(self, node) -> bool:
        """Whether the combo box would show this node."""
        if node is None or self._scene is None or node.GetScene() is not self._scene or node.GetHideFromEditors():
            return False
        if self.showChildNodeTypes:
            return any(node.IsA(nodeType) for nodeType in self.nodeTypes)
        return node.GetClassName() in self.nodeTypes

    def nodes(self) -> list:
        if self._scene is None:
            return []
        return [node for node in (self._scene.GetNthNode(i) for i in range(self._scene.GetNumberOfNodes())) if self.lists(node)]

    def currentNode(self):
        return self._current if self.lists(self._current) else None

    def _currentNodeID(self) -> str:
        node = self.currentNode()
        return node.GetID() if node is not None else ""

    @Slot("vtkMRMLScene*")
    def setMRMLScene(self, scene):
        if scene is self._scene:
            return
        self._scene = scene
        self._select(self._current if self.lists(self._current) else None)
        self.setEnabled(scene is not None)

    @Slot("vtkMRMLNode*")
    def setCurrentNode(self, node):
        if isinstance(node, str):  # the deprecated setCurrentNode(const QString& nodeID)
            self.setCurrentNodeID(node)
            return
        self._select(node if self.lists(node) else None)

    @Slot(str)
    def setCurrentNodeID(self, nodeID):
        self._select(self._scene.GetNodeByID(nodeID) if self._scene is not None and nodeID else None)

    currentNodeID = Property(str, _currentNodeID, setCurrentNodeID)  # a property, as in PythonQt: combo.currentNodeID

    @Slot()
    def addNode(self):
        if not self.nodeTypes or self._scene is None:
            return None
        node = self._scene.AddNewNodeByClass(self.nodeTypes[0])
        if self.selectNodeUponCreation:
            self.setCurrentNode(node)
        self.nodeAddedByUser.emit(node)
        return node

    def _select(self, node):
        if node is self._current:
            return
        self._current = node
        self.currentNodeChanged.emit(node)
        self.currentNodeIDChanged.emit(node.GetID() if node is not None else "")


class ctkMenuButton(pythonQtClass(QtWidgets.QPushButton)):
    """CTK's push button with a menu; nothing of it is used beyond QPushButton."""


class qMRMLSegmentationShow3DButton(ctkMenuButton):
    """As in qMRMLSegmentationShow3DButton.cxx: enabled only for a segmentation with at least one segment
    whose source representation is not the closed surface, unless locked; updated when the node changes."""

    SLICER_HEADERS = ("Modules/Loadable/Segmentations/Widgets/qMRMLSegmentationShow3DButton.h",)
    locked = _storedProperty(bool, "_locked", False, onChange=lambda self, value: self.updateWidgetFromMRML())

    def __init__(self, parent=None):
        super().__init__(parent)
        self._node = None
        self._observations = []
        self.setEnabled(False)
        self.destroyed.connect(_forgetObservations(self._observations))

    def segmentationNode(self):
        return self._node

    @Slot("vtkMRMLSegmentationNode*")
    def setSegmentationNode(self, node):
        if node is self._node:
            return
        _forgetObservations(self._observations)()
        self._node = node
        if node is not None:
            for event in (vtk.vtkCommand.ModifiedEvent, node.GetSegmentation().SegmentAdded, node.GetSegmentation().SegmentRemoved):
                self._observations.append((node, node.AddObserver(event, lambda caller, event: self.updateWidgetFromMRML())))
        self.updateWidgetFromMRML()

    @Slot()
    def updateWidgetFromMRML(self):
        segmentation = self._node.GetSegmentation() if self._node is not None else None
        self.setEnabled(bool(segmentation is not None and not self.locked and segmentation.GetNumberOfSegments() > 0
                             and segmentation.GetSourceRepresentationName() != "Closed surface"))


def _forgetObservations(observations):
    def forget(*_):
        while observations:
            node, tag = observations.pop()
            node.RemoveObserver(tag)
    return forget


class ctkCollapsibleButton(PythonQtStyle, QtWidgets.QAbstractButton):
    """A titled section; `collapsed` (notify contentsCollapsed(bool)) as in CTK. Nothing is painted."""

    contentsCollapsed = Signal(bool)
    collapsed = _storedProperty(bool, "_collapsed", False, onChange=lambda self, value: self.contentsCollapsed.emit(value))

    def paintEvent(self, event):
        pass


class ctkPathLineEdit(PythonQtStyle, QtWidgets.QWidget):
    """A path field: `currentPath` (USER property; setting a new path emits currentPathChanged(QString)),
    `filters` (a Filters flag: ctkPathLineEdit.Dirs, ...) as in CTK's ctkPathLineEdit.h."""

    Dirs, Files, Drives, NoSymLinks = 0x001, 0x002, 0x004, 0x008
    AllEntries = Dirs | Files | Drives
    currentPathChanged = Signal(str)
    filters = _storedProperty(int, "_filters", AllEntries)
    currentPath = _storedProperty(str, "_currentPath", "", onChange=lambda self, value: self.currentPathChanged.emit(value))

    @Slot(str)
    def setCurrentPath(self, path):
        self.currentPath = path


class qSlicerScriptedLoadableModuleWidget(PythonQtStyle, QtWidgets.QWidget):
    """The module panel that Slicer gives a scripted widget as `parent`: a vertical layout and isEntered.
    Slicer calls the Python widget's setup() once and its enter()/exit() as the module is shown or left."""

    SLICER_HEADERS = ("Base/QTGUI/qSlicerAbstractModuleWidget.h", "Base/QTGUI/qSlicerScriptedLoadableModuleWidget.h")
    isEntered = Property(bool, lambda self: self.__dict__.get("_entered", False))

    def __init__(self, parent=None):
        super().__init__(parent)
        QtWidgets.QVBoxLayout(self)

    def enter(self):  # Q_INVOKABLE in qSlicerAbstractModuleWidget
        self._entered = True

    def exit(self):
        self._entered = False


class qSlicerModuleManager(PythonQtStyle, QObject):
    """slicer.app.moduleManager(): ScriptedLoadableModuleWidget connects moduleAboutToBeUnloaded(QString)."""

    SLICER_HEADERS = ("Base/QTCore/qSlicerModuleManager.h",)
    moduleAboutToBeUnloaded = Signal(str)


class Application:
    """slicer.app without a main window, in testing mode (message boxes are only logged, as in Slicer's tests)."""

    applicationName = "Slicer"

    def __init__(self):
        self._moduleManager = qSlicerModuleManager()

    def moduleManager(self):
        return self._moduleManager

    def testingEnabled(self) -> bool:
        return True

    def translate(self, context, text):
        return QtCore.QCoreApplication.translate(context, text)  # no translator is installed: the English text

    def setOverrideCursor(self, cursor):
        QtWidgets.QApplication.setOverrideCursor(cursor)

    def restoreOverrideCursor(self):
        QtWidgets.QApplication.restoreOverrideCursor()

    def topLevelWidgets(self):
        return QtWidgets.QApplication.topLevelWidgets()

    def layoutManager(self):
        return None


CUSTOM_WIDGETS = {cls.__name__: cls for cls in (qMRMLWidget, qMRMLNodeComboBox, qMRMLSegmentationShow3DButton, ctkMenuButton,
                                                 ctkCollapsibleButton, ctkPathLineEdit)}
# Names that guiConnectors.py compares widget types with; no widget of the .ui is one of them.
_UNUSED_CTK = ("ctkCheckBox", "ctkComboBox", "ctkSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox", "ctkRangeWidget",
               "ctkDoubleRangeSlider", "ctkCheckablePushButton", "ctkColorPickerButton", "ctkDirectoryButton")
_UNUSED_SLICER = ("qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget")


def widgetClass(className):
    """The class the loader builds for a class name of the .ui; None if there is no such widget class."""
    if className in CUSTOM_WIDGETS:
        return CUSTOM_WIDGETS[className]
    base = getattr(QtWidgets, className, None)
    if isinstance(base, type) and issubclass(base, QtWidgets.QWidget):
        return pythonQtClass(base)
    return None


class QUiLoader(QtUiTools.QUiLoader):
    """qt.QUiLoader: builds PythonQt-style widgets and wires the .ui's VTK-carrying <connections> (see above)."""

    def createWidget(self, className, parent=None, name=""):
        cls = widgetClass(className)
        if cls is None:
            problems.append(f"no widget class {className!r} (for {name!r})")
            cls = pythonQtClass(QtWidgets.QWidget)
        widget = cls(parent)
        widget.setObjectName(name)
        return widget

    def load(self, device, parentWidget=None):
        data = bytes(device.readAll().data())
        buffer = QtCore.QBuffer()
        buffer.setData(data)
        buffer.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
        widget = super().load(buffer, parentWidget)
        if widget is not None:
            self._wireVtkConnections(widget, ElementTree.fromstring(data))
        return widget

    def _wireVtkConnections(self, root, document):
        def find(name):
            return root if QObject.objectName(root) == name else root.findChild(QObject, name)

        for connection in document.iter("connection"):
            signal = connection.findtext("signal")
            if not any(argument.endswith("*") for argument in splitSignature(signal)[1]):
                continue  # Qt's own connection carries it
            sender, receiver = find(connection.findtext("sender")), find(connection.findtext("receiver"))
            slotName = splitSignature(connection.findtext("slot"))[0]
            if sender is None or receiver is None or not hasattr(receiver, slotName):
                problems.append(f"cannot wire the .ui connection {ElementTree.tostring(connection, encoding='unicode').split()}")
                continue
            sender.connect(signal, getattr(receiver, slotName))


#
# The modules
#


def qtModule():
    """A `qt` module: PySide6's QtCore, QtGui and QtWidgets names, the PythonQt-style widget classes, QUiLoader."""
    module = types.ModuleType("qt", "PySide6 as PythonQt (Testing/mrml/qt_shim.py)")
    for source in (QtCore, QtGui, QtWidgets):
        for name in dir(source):
            if not name.startswith("_"):
                setattr(module, name, getattr(source, name))
    for name in PYTHONQT_WIDGETS:
        setattr(module, name, pythonQtClass(getattr(QtWidgets, name)))
    module.QUiLoader = QUiLoader
    return module


def ctkModule():
    module = types.ModuleType("ctk", "CTK stand-ins (Testing/mrml/qt_shim.py)")
    for name in ("ctkCollapsibleButton", "ctkPathLineEdit", "ctkMenuButton"):
        setattr(module, name, CUSTOM_WIDGETS[name])
    for name in _UNUSED_CTK:
        setattr(module, name, type(name, (), {"__doc__": "stand-in: named by guiConnectors.py, never instantiated"}))
    return module


def application():
    """The process's QApplication (created once, on the platform that QT_QPA_PLATFORM names)."""
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["VQSegTest"])


@contextlib.contextmanager
def installed(settingsFolder):
    """`qt`, `ctk`, the slicer.qMRML*/qSlicer* stand-ins and slicer.app in place; Qt settings in
    settingsFolder (never the user's). Everything is put back on exit (the QApplication stays)."""
    import slicer

    application()
    savedFormat = QtCore.QSettings.defaultFormat()
    QtCore.QCoreApplication.setOrganizationName("VQSegTest")
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.Format.IniFormat)
    QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, str(settingsFolder))
    slicerNames = {name: CUSTOM_WIDGETS.get(name) for name in ("qMRMLWidget", "qMRMLNodeComboBox", "qMRMLSegmentationShow3DButton")}
    slicerNames["qSlicerScriptedLoadableModuleWidget"] = qSlicerScriptedLoadableModuleWidget
    slicerNames.update({name: type(name, (), {"__doc__": "stand-in: never instantiated"}) for name in _UNUSED_SLICER})
    slicerNames["app"] = Application()
    savedModules = {name: sys.modules.get(name) for name in ("qt", "ctk")}
    savedSlicer = {name: vars(slicer).get(name, _MISSING) for name in slicerNames}
    sys.modules.update(qt=qtModule(), ctk=ctkModule())
    for name, value in slicerNames.items():
        setattr(slicer, name, value)
    try:
        yield sys.modules["qt"]
    finally:
        QtCore.QSettings.setDefaultFormat(savedFormat)
        for name, module in savedModules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name, value in savedSlicer.items():
            if value is _MISSING:
                delattr(slicer, name)
            else:
                setattr(slicer, name, value)


_MISSING = object()
