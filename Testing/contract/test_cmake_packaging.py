"""Configure the extension with a stand-in Slicer (stand_in_slicer/) and look at the module folder it builds.

The stand-in keeps what the real macros do with files (the existence check, the copy of each
listed path relative to its source folder), so this checks that VQSegCore/ and Resources/, which
live at the repository root, land beside VQSeg.py and that the module then finds them there.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from contract_checks import REPO
from VQSegLib.locations import findSupportFolders

STAND_IN = Path(__file__).resolve().parent / "stand_in_slicer"
MODULE_FOLDER = Path("lib/Slicer-5.10/qt-scripted-modules")

# project() in the extension's CMakeLists enables C and C++, so configuring needs compilers too.
pytestmark = pytest.mark.skipif(
    shutil.which("cmake") is None or not (shutil.which("cc") or shutil.which("gcc")) or not (shutil.which("c++") or shutil.which("g++")),
    reason="needs cmake and a C/C++ compiler")


def copySources(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    target.mkdir()
    shutil.copy(REPO / "CMakeLists.txt", target)
    for folder in ("VQSegExtension", "VQSegCore", "Resources"):
        shutil.copytree(REPO / folder, target / folder, ignore=ignore)
    return target


def configure(source: Path, build: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["cmake", "-S", str(source), "-B", str(build), f"-DSlicer_DIR={STAND_IN}", "-DBUILD_TESTING=ON"],
                          capture_output=True, text=True, timeout=300)


def filesUnder(folder: Path) -> set:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_the_built_module_folder_holds_the_core_and_resources(tmp_path):
    source = copySources(tmp_path / "source")
    # Things that must and must not be packaged.
    (source / "VQSegCore" / "__pycache__").mkdir(exist_ok=True)
    (source / "VQSegCore" / "__pycache__" / "stale.cpython-312.pyc").write_bytes(b"")
    (source / "VQSegCore" / "tables").mkdir()
    (source / "VQSegCore" / "tables" / "extra.json").write_text("{}")
    (source / "Resources" / "Screenshots").mkdir(exist_ok=True)
    (source / "Resources" / "Screenshots" / "readme-only.png").write_bytes(b"")

    configured = configure(source, tmp_path / "build")
    assert configured.returncode == 0, configured.stdout + configured.stderr
    moduleFolder = tmp_path / "build" / MODULE_FOLDER
    packaged = filesUnder(moduleFolder)

    expected = {"VQSeg.py"} | {f"VQSegLib/{p.name}" for p in (source / "VQSegExtension" / "VQSegLib").glob("*.py")}
    expected |= {f"VQSegCore/{name}" for name in filesUnder(source / "VQSegCore") if "__pycache__" not in name}
    expected |= {f"Resources/{name}" for name in filesUnder(source / "Resources") if not name.startswith("Screenshots/")}
    assert packaged == expected
    assert "VQSegCore/tables/extra.json" in packaged and "Resources/UI/VQSeg.ui" in packaged

    folders = findSupportFolders(str(moduleFolder))
    assert Path(folders.resources) == moduleFolder / "Resources" and Path(folders.coreSearchPath) == moduleFolder

    record = (tmp_path / "build" / "stand_in_record.txt").read_text().splitlines()
    assert "MODULE=VQSeg" in record and "UNITTEST=VQSeg.py" in record
    assert "EXTENSION_CATEGORY=Segmentation" in record and "EXTENSION_DEPENDS=PyTorch" in record


def test_a_listed_file_that_is_missing_stops_the_configure(tmp_path):
    source = copySources(tmp_path / "source")
    (source / "VQSegExtension" / "VQSegLib" / "roi.py").unlink()
    configured = configure(source, tmp_path / "build")
    assert configured.returncode != 0
    output = " ".join((configured.stdout + configured.stderr).split())  # CMake wraps long messages
    assert "nonexistent file or directory 'VQSegLib/roi.py'" in output
