"""The module file follows Slicer's conventions; the GUI never installs or imports torch at import; the core is Slicer-free."""

import ast

import contract_checks as checks
from contract_checks import EXTENSION, REPO

EXTENSION_SOURCES = sorted(EXTENSION.rglob("*.py"))
CORE_SOURCES = sorted((REPO / "VQSegCore").rglob("*.py"))


def test_module_classes(moduleSource):
    assert set(checks.MODULE_CLASSES) <= checks.classNames(moduleSource)
    assert checks.WRAPPER_CLASS in checks.classNames(moduleSource)
    assert "VQSegWidget" not in checks.classNames(moduleSource.replace("class VQSegWidget(", "class VQSegPanel(", 1))


def test_every_extension_file_parses_as_python_3_9_and_3_12():
    assert EXTENSION_SOURCES
    problems = {p.name: checks.syntaxProblems(p.read_text(encoding="utf-8")) for p in EXTENSION_SOURCES}
    assert {name: found for name, found in problems.items() if found} == {}
    assert checks.syntaxProblems("match value:\n    case 1:\n        pass\n", versions=[(3, 9)])  # a 3.10 statement is caught


def test_no_evaluated_union_annotations():
    problems = {p.name: checks.evaluatedUnionProblems(p.read_text(encoding="utf-8")) for p in EXTENSION_SOURCES}
    assert {name: found for name, found in problems.items() if found} == {}
    assert checks.evaluatedUnionProblems("def f(x: int | None) -> None:\n    pass\n")
    assert not checks.evaluatedUnionProblems("from __future__ import annotations\ndef f(x: int | None) -> None:\n    pass\n")
    wrapper = "from __future__ import annotations\n@parameterNodeWrapper\nclass P:\n    a: int | None\n"
    assert checks.evaluatedUnionProblems(wrapper)  # Slicer resolves wrapper hints even when postponed


def test_nothing_installs_or_imports_torch_at_import_time():
    problems = {p.name: checks.importTimeProblems(p.read_text(encoding="utf-8")) for p in EXTENSION_SOURCES}
    assert {name: found for name, found in problems.items() if found} == {}
    assert checks.importTimeProblems("import slicer\nslicer.util.pip_install('einops')\n")
    assert checks.importTimeProblems("class A:\n    installMissing()\n")
    assert checks.importTimeProblems("def f():\n    import torch\n")
    assert not checks.importTimeProblems("def f():\n    slicer.util.pip_install('einops')\n")


def test_core_never_imports_slicer_qt_ctk_or_vtk():
    assert len(CORE_SOURCES) > 50
    problems = {str(p.relative_to(REPO)): checks.forbiddenCoreImports(p.read_text(encoding="utf-8")) for p in CORE_SOURCES}
    assert {name: found for name, found in problems.items() if found} == {}
    assert checks.forbiddenCoreImports("def f():\n    from slicer.util import arrayFromVolume\n")
    assert checks.forbiddenCoreImports("import vtk.util.numpy_support\n")
    assert not checks.forbiddenCoreImports("import vtkish\nimport SimpleITK\n")


def test_a_scene_close_cancels_a_running_segment_and_an_import_checks_that_its_nodes_are_still_there(moduleSource):
    functions = {f.name: ast.unparse(f) for f in ast.walk(ast.parse(moduleSource)) if isinstance(f, ast.FunctionDef)}
    close = functions["onSceneStartClose"]
    assert "self._activeAction == 'segment'" in close and "self.logic.cancel()" in close
    importer = functions["_importSegmentation"]
    assert "scene.isInScene(inputVolume)" in importer and "raise ValueError" in importer
    assert "scene.removeUncertaintyOverlay(" in importer  # no heat map of an earlier run over a new result


def test_reload_reloads_the_library_before_the_module(moduleSource):
    functions = {f.name: ast.unparse(f) for f in ast.walk(ast.parse(moduleSource)) if isinstance(f, ast.FunctionDef)}
    reload = functions["onReload"]
    assert "importlib.reload(sys.modules[name])" in reload and "'VQSegLib.'" in reload
    assert reload.index("importlib.reload") < reload.index("ScriptedLoadableModuleWidget.onReload(self)")
    assert "CliRunner(pythonExecutable," in moduleSource  # looked up per run, not once at start-up


def test_the_panel_is_busy_while_packages_install(moduleSource):
    functions = {f.name: ast.unparse(f) for f in ast.walk(ast.parse(moduleSource)) if isinstance(f, ast.FunctionDef)}
    install = functions["_ensureDependencies"]
    assert "if self._activeAction is not None:\n        return False" in install  # no second install, no run meanwhile
    assert install.index("self._setBusy('install')") < install.index("self.logic.ensureDependencies()")
    assert "finally:\n        self._setBusy(None)" in install


def test_the_self_test_never_installs_under_ctest(moduleSource):
    functions = {f.name: ast.unparse(f) for f in ast.walk(ast.parse(moduleSource)) if isinstance(f, ast.FunctionDef)}
    loop = functions["test_SegmentCorrectCollectFinetune"]
    guard = loop.index("if slicer.app.testingEnabled():")
    assert guard < loop.index("self.skipTest(") < loop.index("logic.ensureDependencies()")
    assert "else:\n        logic.ensureDependencies()" in loop  # installs only when run by hand
    assert "ensureDependencies" not in functions["test_RoiBox"] + functions["runTest"]


def test_the_synthetic_chest_ct_is_registered_with_sample_data_once_slicer_has_started(moduleSource):
    assert 'slicer.app.connect("startupCompleted()", lambda: _registerSampleData(iconPath))' in moduleSource
    functions = {f.name: ast.unparse(f) for f in ast.walk(ast.parse(moduleSource)) if isinstance(f, ast.FunctionDef)}
    assert "sample_data.register(thumbnailPath)" in functions["_registerSampleData"]
    assert "except ImportError" in functions["_registerSampleData"]
