"""Slicer's own pure-Python modules, read at run time from a git clone of Slicer, on top of the slicer-core wheel.

The wheel has MRML (`slicer.vtkMRML*`) and `slicer.util`, but not the Python that VQSeg.py imports from the
Slicer application: `slicer.parameterNodeWrapper`, `slicer.i18n` and `slicer.ScriptedLoadableModule`. Those are
taken with `git archive` from a Slicer clone (VQSEG_SLICER_SOURCE, by default the local bare mirror) into a
temporary folder, never copied into this repository. Without the clone (CI) the tests that need it skip.

What neither the wheel nor those files provide is Qt (`qt`, `ctk`, the `slicer.qMRML*` widgets). Storing
parameters does not need it: the wrapper's modules only name a few Qt classes at import time (base class
and function annotations). `standInModules` gives exactly those names, as empty classes.
"""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest

SOURCE_ENV = "VQSEG_SLICER_SOURCE"
# A mirror beside the checkout (<parent of the checkout>/.mirror/Slicer+Slicer/repo), where one is kept.
DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / ".mirror" / "Slicer+Slicer" / "repo"
REFS_ENV = "VQSEG_SLICER_REFS"  # comma-separated tags or commits
DEFAULT_REFS = ("v5.10.0", "v5.12.3")  # 5.10: the release VQSeg targets; 5.12: the wheel's release

# Files of the Slicer tree that VQSeg.py needs beyond the wheel; extracted as <folder>/slicer/...
SLICER_PYTHON = (
    "Base/Python/slicer/parameterNodeWrapper",
    "Base/Python/slicer/i18n.py",
    "Base/Python/slicer/ScriptedLoadableModule.py",
)

# Qt names that Slicer's files use at import time (Slicer 5.10 and 5.12): serializers.py subclasses
# qt.QColor; guiConnectors.py annotates connector methods with the other classes. None is ever instantiated.
QT_NAMES = ("QColor", "QWidget", "QCheckBox", "QPushButton", "QLabel", "QLineEdit", "QTextEdit")
CTK_NAMES = ("ctkCheckablePushButton", "ctkColorPickerButton", "ctkDirectoryButton", "ctkPathLineEdit")
SLICER_QT_NAMES = ("qMRMLNodeComboBox",)  # a Qt widget of the application, not in the wheel


def sourceRepository() -> Path:
    return Path(os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE)


def refs() -> list:
    return [ref.strip() for ref in os.environ.get(REFS_ENV, ",".join(DEFAULT_REFS)).split(",") if ref.strip()]


def extract(repository: Path, ref: str, destination: Path) -> Path:
    """SLICER_PYTHON at `ref` of the git repository (bare or not) into destination; returns the folder that
    holds the `slicer/...` files. Skips the calling test when the repository, git or the ref is missing."""
    if not repository.exists():
        pytest.skip(f"no Slicer source at {repository}: set {SOURCE_ENV} to a git clone of Slicer/Slicer")
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot read Slicer's source")
    git = ["git", "-C", str(repository)]
    if subprocess.run(git + ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], capture_output=True).returncode:
        pytest.skip(f"{ref} is not in the Slicer clone at {repository}")
    archive = subprocess.run(git + ["archive", "--format=tar", ref, *SLICER_PYTHON], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # filter: Python >= 3.11.4
    return destination / "Base" / "Python" / "slicer"


def standInModules() -> dict:
    """`qt` and `ctk` modules holding only QT_NAMES and CTK_NAMES, as empty classes."""
    modules = {}
    for name, classNames in (("qt", QT_NAMES), ("ctk", CTK_NAMES)):
        module = types.ModuleType(name, f"Stand-in for {name} (see Testing/mrml/slicer_source.py): import-time names only.")
        for className in classNames:
            setattr(module, className, type(className, (), {"__doc__": "stand-in: never instantiated"}))
        modules[name] = module
    return modules


@contextlib.contextmanager
def slicerPython(folder: Path):
    """Makes `slicer.<module>` importable from `folder` (the result of `extract`) as parts of the real slicer
    package, with the stand-ins where there is no real qt / ctk / slicer.qMRML*. All undone on exit."""
    import slicer

    addedModules = {name: module for name, module in standInModules().items() if name not in sys.modules}
    addedAttributes = [name for name in SLICER_QT_NAMES if not hasattr(slicer, name)]
    ours = [path.stem for path in folder.iterdir() if path.name != "__pycache__"]  # parameterNodeWrapper, i18n, ...
    addedAttributes += [stem for stem in ours if not hasattr(slicer, stem)]  # set by the imports of the submodules
    sys.modules.update(addedModules)
    for name in SLICER_QT_NAMES:
        if name in addedAttributes:
            setattr(slicer, name, type(name, (), {"__doc__": "stand-in: never instantiated"}))
    slicer.__path__.append(str(folder))  # the wheel's `slicer` is a namespace-like package: extra folders are searched too
    try:
        yield
    finally:
        slicer.__path__.remove(str(folder))
        for name in list(sys.modules):
            if name in addedModules or any(name == f"slicer.{stem}" or name.startswith(f"slicer.{stem}.") for stem in ours):
                del sys.modules[name]
        for name in addedAttributes:
            if name in vars(slicer):
                delattr(slicer, name)
