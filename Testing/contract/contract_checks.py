"""Static checks of the Slicer module, as functions of a repository folder or of source text.

The tests run them on the real repository (expecting no problems) and on doctored copies
(expecting the problem to be found), so every check is known to be able to fail.
Standard library only: no Slicer, no Qt.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "VQSegExtension"
MODULE_NAME = "VQSeg"
MODULE_CLASSES = ("VQSeg", "VQSegWidget", "VQSegLogic", "VQSegTest")
WRAPPER_CLASS = "VQSegParameterNode"
EXTENSION_VARIABLES = ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS")
FORBIDDEN_IN_CORE = ("slicer", "qt", "ctk", "vtk", "vtkmodules", "PythonQt", "SimpleITK.utilities.vtk")
INSTALL_CALLS = ("pip_install", "pip_ensure", "installMissing", "installTorch")

# GUI connectors of Slicer 5.10 (Base/Python/slicer/parameterNodeWrapper/guiConnectors.py, each
# connector's canRepresent): widget class -> the field types it can show. Compared by exact class
# name, as the connectors compare `type(widget)`.
_NUMBERS = {"float", "int"}
_PATHS = {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"}
CONNECTORS = {
    "QCheckBox": {"bool"}, "ctkCheckBox": {"bool"}, "QPushButton": {"bool"}, "ctkCheckablePushButton": {"bool"},
    "QSpinBox": {"int"}, "QSlider": {"int"},
    "QDoubleSpinBox": _NUMBERS, "ctkSliderWidget": _NUMBERS, "qMRMLSliderWidget": _NUMBERS,
    "ctkDoubleSlider": _NUMBERS, "ctkDoubleSpinBox": _NUMBERS, "qMRMLSpinBox": _NUMBERS,
    "QComboBox": {"int", "float", "str", "bool", "Enum"}, "ctkComboBox": {"int", "float", "str", "bool", "Enum"},
    "QLineEdit": {"str"}, "QLabel": {"str"}, "QTextEdit": {"str"},
    "ctkRangeWidget": {"FloatRange"}, "ctkDoubleRangeSlider": {"FloatRange"}, "qMRMLRangeWidget": {"FloatRange"},
    "ctkPathLineEdit": _PATHS, "ctkDirectoryButton": _PATHS,
    "qMRMLNodeComboBox": {"vtkMRMLNode"},
    "ctkColorPickerButton": {"QColor"},
}
# Connectors that raise at connectGui unless the field is bounded (WithinRange, or Minimum and Maximum).
NEEDS_BOUNDS = {"ctkSliderWidget", "qMRMLSliderWidget", "QSlider"}
# The combo-box connector for plain values raises without a Choice annotation (it lists the choices).
NEEDS_CHOICE = {"QComboBox", "ctkComboBox"}


# ---- the .ui file ---------------------------------------------------------------------------

def uiWidgets(uiText: str) -> dict[str, str]:
    """{objectName: class} of every widget in a Qt Designer file."""
    root = ElementTree.fromstring(uiText)
    return {element.get("name"): element.get("class") for element in root.iter("widget")}


def uiParameterBindings(uiText: str) -> list[tuple[str, str, str]]:
    """(widget name, widget class, field) for each widget with a SlicerParameterName property."""
    root = ElementTree.fromstring(uiText)
    bindings = []
    for element in root.iter("widget"):
        for child in element.findall("property"):
            if child.get("name") == "SlicerParameterName":
                bindings.append((element.get("name"), element.get("class"), (child.findtext("string") or "").strip()))
    return bindings


def uiSceneConnections(uiText: str) -> set[str]:
    """Widgets that receive the top-level widget's mrmlSceneChanged(vtkMRMLScene*) signal."""
    root = ElementTree.fromstring(uiText)
    return {c.findtext("receiver") for c in root.iter("connection")
            if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}


# ---- the module's Python --------------------------------------------------------------------

def usedUiNames(source: str) -> set[str]:
    """Every X in `self.ui.X` or `ui.X`."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "ui") or (isinstance(owner, ast.Attribute) and owner.attr == "ui"):
                names.add(node.attr)
    return names


def _typeDescription(annotation: ast.expr) -> tuple[str, set[str]]:
    """(base type name, names of the Annotated extras) of a field annotation."""
    if isinstance(annotation, ast.Subscript) and _name(annotation.value) == "Annotated":
        elements = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        base, extras = _typeDescription(elements[0])
        return base, extras | {_name(e.func) if isinstance(e, ast.Call) else _name(e) for e in elements[1:]}
    if isinstance(annotation, ast.Subscript) and _name(annotation.value) == "Optional":
        return _typeDescription(annotation.slice)
    return _name(annotation), set()


def _name(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ast.dump(node)


def wrapperFields(source: str, className: str = WRAPPER_CLASS) -> dict[str, tuple[str, set[str]]]:
    """{field: (base type, annotation extras)} of a @parameterNodeWrapper class."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == className:
            if not any(_name(d) == "parameterNodeWrapper" for d in node.decorator_list):
                raise ValueError(f"{className} is not decorated with @parameterNodeWrapper")
            return {item.target.id: _typeDescription(item.annotation) for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    raise ValueError(f"no class {className}")


def _connectorKind(typeName: str, enumNames: set[str]) -> str:
    if typeName.startswith("vtkMRML"):
        return "vtkMRMLNode"
    if typeName in enumNames:
        return "Enum"
    return typeName


def bindingProblems(uiText: str, source: str) -> list[str]:
    """SlicerParameterName bindings that name no field, or that no GUI connector can serve."""
    fields = wrapperFields(source)
    enumNames = {n.name for n in ast.walk(ast.parse(source))
                 if isinstance(n, ast.ClassDef) and any(_name(b) in ("Enum", "IntEnum", "StrEnum") for b in n.bases)}
    problems = []
    seen = set()
    for widgetName, widgetClass, field in uiParameterBindings(uiText):
        if field in seen:
            problems.append(f"{widgetName}: field {field!r} is bound to more than one widget")
        seen.add(field)
        if field not in fields:
            problems.append(f"{widgetName}: SlicerParameterName {field!r} is not a field of {WRAPPER_CLASS}")
            continue
        typeName, extras = fields[field]
        kind = _connectorKind(typeName, enumNames)
        if widgetClass not in CONNECTORS:
            problems.append(f"{widgetName}: {widgetClass} has no parameter-node GUI connector")
        elif kind not in CONNECTORS[widgetClass]:
            problems.append(f"{widgetName}: {widgetClass} cannot show field {field!r} of type {typeName}")
        elif widgetClass in NEEDS_BOUNDS and not ({"WithinRange"} <= extras or {"Minimum", "Maximum"} <= extras):
            problems.append(f"{widgetName}: {widgetClass} needs a bounded field, {field!r} has no WithinRange")
        elif widgetClass in NEEDS_CHOICE and kind != "Enum" and "Choice" not in extras:
            problems.append(f"{widgetName}: {widgetClass} needs a Choice annotation on {field!r}")
    return problems


def classNames(source: str) -> set[str]:
    return {node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}


# ---- imports and module scope -----------------------------------------------------------------

def importedModules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _isUnder(module: str, packages) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def forbiddenCoreImports(source: str) -> list[str]:
    """Imports of Slicer, Qt, CTK or VTK (VQSegCore must run without Slicer)."""
    return [f"line {line}: import {module}" for line, module in importedModules(ast.parse(source)) if _isUnder(module, FORBIDDEN_IN_CORE)]


def _moduleScopeNodes(tree: ast.Module):
    """Nodes that run at import time: everything except function bodies (class bodies do run)."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending += node.decorator_list
            continue
        yield node
        pending += list(ast.iter_child_nodes(node))


def importTimeProblems(source: str) -> list[str]:
    """Package installs at import time, and any torch import at all (the GUI process never imports torch)."""
    tree = ast.parse(source)
    problems = [f"line {line}: import {module} (ask the CLI instead)" for line, module in importedModules(tree)
                if _isUnder(module, ("torch", "torchvision"))]
    for node in _moduleScopeNodes(tree):
        if isinstance(node, ast.Call) and _name(node.func) in INSTALL_CALLS:
            problems.append(f"line {node.lineno}: {_name(node.func)}() runs at import time")
    return problems


def evaluatedUnionProblems(source: str) -> list[str]:
    """`X | Y` in annotations that Python 3.9 evaluates (no `from __future__ import annotations`, or the
    parameter-node wrapper, whose hints Slicer resolves with typing.get_type_hints)."""
    tree = ast.parse(source)
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
                    for n in tree.body)
    problems = []
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, ast.ClassDef) and any(_name(d) == "parameterNodeWrapper" for d in node.decorator_list):
            annotations = [item.annotation for item in node.body if isinstance(item, ast.AnnAssign)]
        elif not postponed and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            annotations = [a.annotation for a in arguments if a.annotation] + ([node.returns] if node.returns else [])
        elif not postponed and isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in annotations:
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(annotation)):
                problems.append(f"line {annotation.lineno}: 'X | Y' annotation is evaluated; use Optional[...] / Union[...]")
    return problems


def syntaxProblems(source: str, versions=((3, 9), (3, 12))) -> list[str]:
    problems = []
    for version in versions:
        try:
            ast.parse(source, feature_version=version)
        except SyntaxError as error:
            problems.append(f"Python {version[0]}.{version[1]}: line {error.lineno}: {error.msg}")
    return problems


# ---- CMake ------------------------------------------------------------------------------------

def _stripComments(cmakeText: str) -> str:
    """CMake text without comments ('#' outside quotes); the '## NEXT_MODULE' marker line is kept."""
    lines = []
    for line in cmakeText.splitlines():
        if line.strip() == "## NEXT_MODULE":
            lines.append(line)
            continue
        quoted = False
        for index, character in enumerate(line):
            if character == '"':
                quoted = not quoted
            elif character == "#" and not quoted:
                line = line[:index]
                break
        lines.append(line)
    return "\n".join(lines)


def cmakeList(cmakeText: str, variable: str) -> list[str]:
    """The items of `set(VARIABLE ...)` (comments removed)."""
    match = re.search(r"set\(\s*" + re.escape(variable) + r"\b(.*?)\)", _stripComments(cmakeText), re.S)
    if not match:
        raise ValueError(f"no set({variable} ...)")
    return match.group(1).split()


def moduleListProblems(extensionFolder: Path) -> list[str]:
    """MODULE_PYTHON_SCRIPTS / RESOURCES against the module folder, both ways."""
    cmakeText = (extensionFolder / "CMakeLists.txt").read_text(encoding="utf-8")
    scripts = [s.replace("${MODULE_NAME}", MODULE_NAME) for s in cmakeList(cmakeText, "MODULE_PYTHON_SCRIPTS")]
    resources = [s.replace("${MODULE_NAME}", MODULE_NAME) for s in cmakeList(cmakeText, "MODULE_PYTHON_RESOURCES")]
    listed = set(scripts) | set(resources)
    onDisk = {p.relative_to(extensionFolder).as_posix() for p in extensionFolder.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.name != "CMakeLists.txt"}
    problems = [f"listed in CMake but missing: {name}" for name in sorted(listed - onDisk)]
    problems += [f"on disk but not in MODULE_PYTHON_SCRIPTS/RESOURCES (it would not be packaged): {name}" for name in sorted(onDisk - listed)]
    problems += [f"not a Python file in MODULE_PYTHON_SCRIPTS: {name}" for name in scripts if not name.endswith(".py")]
    return problems


def topLevelCMakeProblems(cmakeText: str) -> list[str]:
    problems = []
    for name in EXTENSION_VARIABLES:
        match = re.search(r'set\(\s*EXTENSION_' + name + r'\s+"([^"]*)"\s*\)', cmakeText)
        if not match or not match.group(1).strip():
            problems.append(f"EXTENSION_{name} is not set to a non-empty string")
    for name, expected in (("CATEGORY", "Segmentation"), ("DEPENDS", "PyTorch")):
        match = re.search(r'set\(\s*EXTENSION_' + name + r'\s+"([^"]*)"', cmakeText)
        if match and expected not in match.group(1).split():
            problems.append(f"EXTENSION_{name} should hold {expected}")
    if not re.search(r"^\s*project\(\s*" + MODULE_NAME + r"\s*\)", cmakeText, re.M):
        problems.append(f"project({MODULE_NAME}) missing")
    order = ["find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(VQSegExtension)", "## NEXT_MODULE"]
    positions = [cmakeText.find(item) for item in order]
    if -1 in positions or positions != sorted(positions):
        problems.append("find_package(Slicer), include(${Slicer_USE_FILE}), add_subdirectory(VQSegExtension), ## NEXT_MODULE: missing or out of order")
    code = [line.strip() for line in _stripComments(cmakeText).splitlines() if line.strip()]
    if code[-2:] != ["include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"]:
        problems.append("the file must end with include(${Slicer_EXTENSION_GENERATE_CONFIG}) and include(${Slicer_EXTENSION_CPACK})")
    return problems
