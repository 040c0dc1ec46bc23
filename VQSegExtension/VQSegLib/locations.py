"""Where the module finds Resources/ and the VQSegCore package, and which Python runs the core.

Two layouts must work:
  built extension   <lib>/qt-scripted-modules/{VQSeg.py, VQSegLib/, VQSegCore/, Resources/}
  source checkout   <repo>/VQSegExtension/{VQSeg.py, VQSegLib/}  with  <repo>/{VQSegCore/, Resources/}
(the checkout is added in Slicer through "Additional module paths" -> <repo>/VQSegExtension).
So each is looked for beside VQSeg.py first, then one folder up.

No slicer or qt import: the static tests import this file.
"""

import os
import shutil
import sys
from typing import List, NamedTuple

CORE_PACKAGE = "VQSegCore"
RESOURCES_FOLDER = "Resources"
# A file that only a VQSeg Resources/ folder has; a bare "Resources" folder could belong to anything.
RESOURCES_MARKER = os.path.join("UI", "VQSeg.ui")


class SupportFolders(NamedTuple):
    resources: str  # the Resources/ folder
    coreSearchPath: str  # the folder that holds VQSegCore/ (goes on the child's PYTHONPATH)


def candidateFolders(moduleFolder: str) -> List[str]:
    """Beside the module first (built extension), then its parent (source checkout)."""
    moduleFolder = os.path.abspath(moduleFolder)
    return [moduleFolder, os.path.dirname(moduleFolder)]


def findSupportFolders(moduleFolder: str) -> SupportFolders:
    """Resources/ and VQSegCore/'s parent for the module whose VQSeg.py lies in `moduleFolder`."""
    candidates = candidateFolders(moduleFolder)
    resources = [os.path.join(folder, RESOURCES_FOLDER) for folder in candidates
                 if os.path.isfile(os.path.join(folder, RESOURCES_FOLDER, RESOURCES_MARKER))]
    cores = [folder for folder in candidates if os.path.isfile(os.path.join(folder, CORE_PACKAGE, "__init__.py"))]
    if not resources or not cores:
        missing = " and ".join(name for name, found in ((RESOURCES_FOLDER + "/", resources), (CORE_PACKAGE + "/", cores)) if not found)
        raise FileNotFoundError(
            f"VQSeg cannot find {missing} beside the module or one folder up (looked in {', '.join(candidates)}). "
            "Reinstall the extension, or add the checkout's VQSegExtension folder to the additional module paths.")
    return SupportFolders(resources=resources[0], coreSearchPath=cores[0])


def ensureCoreImportable(coreSearchPath: str) -> None:
    """Put VQSegCore on this process's sys.path (the checkout layout needs it; the built one has it)."""
    if coreSearchPath not in sys.path:
        sys.path.insert(0, coreSearchPath)


def pythonExecutable() -> str:
    """Slicer's own Python for the child process, so packages installed with pip_install are found.

    Asked for each run: inside Slicer the PythonSlicer launcher is on PATH, but sys.executable is the
    Slicer application itself until Slicer has finished starting (running that with -m would open a
    second Slicer). Outside Slicer (tests) it is the running Python.
    """
    launcher = shutil.which("PythonSlicer")
    if launcher:
        return launcher
    for name in ("PythonSlicer", "PythonSlicer.exe"):  # beside the Slicer application, when PATH lacks it
        beside = os.path.join(os.path.dirname(sys.executable or ""), name)
        if os.path.isfile(beside):
            return beside
    if sys.executable and os.path.basename(sys.executable).lower().startswith("python"):
        return sys.executable
    return shutil.which("python3") or shutil.which("python") or "python3"
