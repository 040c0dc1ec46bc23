"""CMake lists against the files on disk, both ways, and the extension's metadata."""

import shutil

import contract_checks as checks
from contract_checks import EXTENSION, REPO


def test_module_lists_match_the_module_folder():
    assert checks.moduleListProblems(EXTENSION) == []
    assert "VQSegLib/segio.py" in checks.cmakeList((EXTENSION / "CMakeLists.txt").read_text(), "MODULE_PYTHON_SCRIPTS")


def test_a_doctored_module_folder_is_caught(tmp_path):
    copy = tmp_path / "VQSegExtension"
    shutil.copytree(EXTENSION, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "VQSegLib" / "unlisted.py").write_text("")
    (copy / "VQSegLib" / "roi.py").unlink()
    problems = checks.moduleListProblems(copy)
    assert any("unlisted.py" in p for p in problems) and any("roi.py" in p for p in problems)


def test_top_level_cmake_sets_the_extension_metadata():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert checks.topLevelCMakeProblems(text) == []
    assert 'GLOB_RECURSE VQSEG_CORE_FILES' in text and '"${PROJECT_SOURCE_DIR}/VQSegCore/*"' in text
    assert '"${PROJECT_SOURCE_DIR}/Resources/*"' in text


def test_doctored_top_level_cmake_is_caught():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert any("CATEGORY" in p for p in checks.topLevelCMakeProblems(text.replace('set(EXTENSION_CATEGORY "Segmentation")\n', "")))
    assert any("DEPENDS" in p for p in checks.topLevelCMakeProblems(text.replace('"PyTorch"', '"NA"')))
    assert any("must end" in p for p in checks.topLevelCMakeProblems(text + "\nmessage(STATUS late)\n"))
    assert any("out of order" in p for p in checks.topLevelCMakeProblems(text.replace("## NEXT_MODULE", "")))
