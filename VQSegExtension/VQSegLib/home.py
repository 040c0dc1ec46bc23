"""The VQSeg home folder (pools and models), kept in the application settings, and the child's environment.

The core reads $VQSEG_HOME (default ~/.vqseg; VQSegCore/paths.py) and resolves `--pool NAME` to
$VQSEG_HOME/pools/NAME (VQSegCore/pool/layout.py, pool_folder). The GUI mirrors those two rules to tell
"no pool yet" from "the pool could not be read" without starting a process; a contract test
compares the mirror with the core.

No slicer or qt import: `settings` is any object with value/setValue/contains (a qt.QSettings).
"""

import os
import re
from typing import Dict, Optional

HOME_SETTINGS_KEY = "VQSeg/HomeFolder"
DEFAULT_HOME = os.path.join("~", ".vqseg")
HOME_VARIABLE = "VQSEG_HOME"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def savedHomeFolder(settings) -> str:
    """The folder the user chose, or "" for the core's default."""
    if not settings.contains(HOME_SETTINGS_KEY):
        return ""
    return str(settings.value(HOME_SETTINGS_KEY) or "").strip()


def saveHomeFolder(settings, folder: str) -> None:
    settings.setValue(HOME_SETTINGS_KEY, (folder or "").strip())


def effectiveHomeFolder(chosenFolder: str, environment: Optional[Dict[str, str]] = None) -> str:
    """What the core will use: the chosen folder, else $VQSEG_HOME, else ~/.vqseg."""
    environment = os.environ if environment is None else environment
    folder = (chosenFolder or "").strip() or environment.get(HOME_VARIABLE) or DEFAULT_HOME
    return os.path.expanduser(folder)


def childEnvironment(chosenHomeFolder: str, device: str) -> Dict[str, str]:
    """Variables for the CLI process: VQSEG_HOME when chosen; the CPU choice also hides every GPU."""
    if device not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
    environment = {}
    if (chosenHomeFolder or "").strip():
        environment[HOME_VARIABLE] = os.path.expanduser(chosenHomeFolder.strip())
    if device == "cpu":
        # Also keeps torch from initialising CUDA at all (memory, driver start-up time).
        environment["CUDA_VISIBLE_DEVICES"] = "-1"
    return environment


def poolFolder(homeFolder: str, nameOrPath: str) -> str:
    """Where `--pool nameOrPath` points: a bare name lives under <home>/pools, anything path-like is a path."""
    text = (nameOrPath or "").strip()
    if not text:
        raise ValueError("no pool given")
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    if any(separator in text for separator in separators) or text.startswith((".", "~")):
        return os.path.expanduser(text)
    if not _POOL_NAME.match(text):
        raise ValueError(f"pool name {text!r} is not a plain name: use letters, digits, '.', '_' or '-', or a folder path")
    return os.path.join(homeFolder, "pools", text)


def isPool(folder: str) -> bool:
    """Whether a pool exists there (its marker file, pool.json, is written last when a pool is created)."""
    return os.path.isfile(os.path.join(folder, "pool.json"))
