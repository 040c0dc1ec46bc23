"""Which Python packages the VQSeg core needs in Slicer's Python, and installing the missing ones.

Checks read distribution metadata only: importing a package (torch above all) can lock its
files and block a later upgrade, and costs seconds. PyTorch comes from the PyTorch extension
(PyTorchUtils picks the build that matches the GPU driver) and is installed before anything
that depends on it, so pip cannot pull a generic torch in as a dependency. Nothing already
installed is ever replaced: pip runs with a constraints file pinning every installed distribution
(Slicer's own packages, the PyTorch extension's torch build), so it may only add packages, and
picks versions of them that fit what is there (e.g. a MONAI that accepts the installed torch).
DICOM SEG export needs pydicom >= 3.0.1 and highdicom >= 0.28; where Slicer ships an older one
(5.10 ships pydicom 2.4.4, 5.12 highdicom 0.27, both used by Slicer's DICOM modules) the two
packages are left out, which the user is told: everything else works, and segmentations are
written as .seg.nrrd (benchmarks/slicer_dependencies.py resolves the plan for both releases). `slicer` is imported only inside `installMissing`.
Python 3.9 syntax (Slicer 5.8).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import os
import re
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

# The core's dependencies (pyproject.toml [project] dependencies) without torch; a test keeps
# CORE_REQUIREMENTS + DICOM_SEG_REQUIREMENTS equal to them.
CORE_REQUIREMENTS = [
    "numpy>=1.24",
    "SimpleITK>=2.3",
    "slicerio>=1.1",
    "safetensors>=0.4",
    "tqdm>=4.60",
    "scipy>=1.10",
    "monai[scipy]>=1.4",
    "matplotlib>=3.8",
]
# Only DICOM SEG export (`vqseg segment -o x.dcm`) needs these; highdicom >= 0.28 needs pydicom >= 3.0.1.
DICOM_SEG_REQUIREMENTS = ["highdicom>=0.28", "pydicom>=3.0.1"]
TORCH_REQUIREMENT = "torch>=2.4"

# Slicer bundles these and its own modules depend on them: use what is there, never reinstall
# (5.12 ships highdicom 0.27 for its DICOM TID1500 plugin).
SLICER_SHIPPED = {"numpy", "simpleitk", "scipy", "pydicom", "highdicom", "pillow", "requests", "packaging"}


class DependencyError(RuntimeError):
    """Dependencies could not be installed (the PyTorch extension is missing, an install failed)."""


class InstallDeclined(DependencyError):
    """The user said no to installing; nothing was installed."""


# ---- requirements and versions (PEP 440, the subset that requirement lists use) ---------------

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(?:;\s*(.*))?$")
_VERSION = re.compile(
    r"^\s*v?(?:(\d+)!)?(\d+(?:\.\d+)*)"
    r"(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?(\d*))?"
    r"(?:(?:-(\d+))|(?:[-_.]?(post|rev|r)[-_.]?(\d*)))?"
    r"(?:[-_.]?(dev)[-_.]?(\d*))?"
    r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\s*$",
    re.IGNORECASE,
)
_PRE_PHASES = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
_INFINITY = float("inf")


def normalizeName(name: str) -> str:
    """PEP 503 name: 'SimpleITK' -> 'simpleitk', 'Foo_Bar.baz' -> 'foo-bar-baz'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parseRequirement(requirement: str) -> Tuple[str, List[Tuple[str, str]], str]:
    """'monai[scipy]>=1.4,<2' -> ('monai', [('>=', '1.4'), ('<', '2')], marker)."""
    match = _REQUIREMENT.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    name, _extras, specifiers, marker = match.groups()
    clauses = []
    for clause in filter(None, (part.strip() for part in specifiers.strip("() ").split(","))):
        operator = re.match(r"(===|==|!=|~=|>=|<=|>|<)", clause)
        if not operator:
            raise ValueError(f"bad version clause {clause!r} in {requirement!r}")
        clauses.append((operator.group(1), clause[operator.end():].strip()))
    return name, clauses, (marker or "").strip()


def versionKey(version: str) -> tuple:
    """A sort key with PEP 440 order: 1.0.dev1 < 1.0a1 < 1.0rc1 < 1.0 < 1.0.post1; '+cpu' is ignored."""
    match = _VERSION.match(version)
    if not match:
        raise ValueError(f"not a version: {version!r}")
    epoch, release, prePhase, preNumber, postImplicit, _post, postNumber, dev, devNumber = match.groups()
    numbers = [int(part) for part in release.split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    post = int(postImplicit or postNumber or 0) if (postImplicit or _post) else None
    if prePhase:
        preKey = (_PRE_PHASES[prePhase.lower()], int(preNumber or 0))
    elif dev and post is None:
        preKey = (-_INFINITY, 0)  # 1.0.dev1 sorts before 1.0a1
    else:
        preKey = (_INFINITY, 0)
    postKey = -_INFINITY if post is None else post
    devKey = int(devNumber or 0) if dev else _INFINITY
    return (int(epoch or 0), tuple(numbers), preKey, postKey, devKey)


def _releaseParts(version: str) -> List[int]:
    return [int(part) for part in _VERSION.match(version).group(2).split(".")]


def versionSatisfies(version: str, clauses: List[Tuple[str, str]]) -> bool:
    """Whether `version` meets every (operator, version) clause."""
    for operator, wanted in clauses:
        if operator == "===":
            ok = version.strip() == wanted
        elif wanted.endswith(".*") and operator in ("==", "!="):
            prefix = _releaseParts(wanted[:-2])
            release = _releaseParts(version) + [0] * len(prefix)  # '1' matches '==1.0.*'
            ok = (release[: len(prefix)] == prefix) == (operator == "==")
        elif operator == "~=":
            prefix = _releaseParts(wanted)[:-1]
            ok = versionKey(version) >= versionKey(wanted) and _releaseParts(version)[: len(prefix)] == prefix
        else:
            have, need = versionKey(version), versionKey(wanted)
            ok = {"==": have == need, "!=": have != need, ">=": have >= need,
                  "<=": have <= need, ">": have > need, "<": have < need}[operator]
        if not ok:
            return False
    return True


def _markerApplies(marker: str) -> bool:
    if not marker:
        return True
    try:  # Slicer ships `packaging`; without it, assume the marker applies
        from packaging.markers import Marker
    except ImportError:
        return True
    return Marker(marker).evaluate()


def installedVersion(name: str) -> Optional[str]:
    """The installed distribution's version, from metadata (nothing is imported), or None."""
    for candidate in dict.fromkeys((name, normalizeName(name), normalizeName(name).replace("-", "_"))):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def unmetRequirements(requirements: List[str], versionOf: Optional[Callable[[str], Optional[str]]] = None) -> List[Tuple[str, Optional[str]]]:
    """(requirement, installed version or None) for each requirement that is absent or too old/new.

    `versionOf(name)`: the installed version of a distribution, or None (default: this Python's).
    """
    versionOf = versionOf or installedVersion
    unmet = []
    for requirement in requirements:
        name, clauses, marker = parseRequirement(requirement)
        if not _markerApplies(marker):
            continue
        version = versionOf(name)
        if version is None:
            unmet.append((requirement, None))
            continue
        try:
            satisfied = versionSatisfies(version, clauses)
        except ValueError:  # a version we cannot read (rare local builds): trust what is installed
            satisfied = True
        if not satisfied:
            unmet.append((requirement, version))
    return unmet


def missingPackages(requirements: List[str]) -> List[str]:
    """The requirements that are not installed, or installed in a version that does not match."""
    return [requirement for requirement, _version in unmetRequirements(requirements)]


def torchStatus(requirement: str = TORCH_REQUIREMENT) -> Tuple[str, str]:
    """('ok' | 'missing', message) for PyTorch, without importing it; too old counts as missing."""
    if importlib.util.find_spec("torch") is None:
        return "missing", "PyTorch is not installed. Install it with the PyTorch extension (module 'PyTorch Util')."
    version = installedVersion("torch")
    _name, clauses, _marker = parseRequirement(requirement)
    if version is not None and not _safelySatisfies(version, clauses):
        wanted = ",".join(op + v for op, v in clauses)
        return "missing", f"PyTorch {version} is installed, VQSeg needs torch{wanted}. Update it in the 'PyTorch Util' module."
    return "ok", f"PyTorch {version or '(version unknown)'} is installed."


def _safelySatisfies(version: str, clauses: List[Tuple[str, str]]) -> bool:
    try:
        return versionSatisfies(version, clauses)
    except ValueError:
        return True


# ---- installing (Slicer only) -----------------------------------------------------------------

def installMissing(requirements: Optional[List[str]] = None, confirm: Optional[Callable[[str], bool]] = None,
                   torchRequirement: str = TORCH_REQUIREMENT) -> List[str]:
    """Install what is missing, after one `confirm(text)`: torch first (PyTorchUtils), then pip.

    `requirements` defaults to CORE_REQUIREMENTS; `confirm` to slicer.util.confirmOkCancelDisplay.
    Returns the requirements installed ('torch...' first when PyTorch was installed); [] when
    nothing was missing. Raises InstallDeclined when the user says no (nothing is installed)
    and DependencyError when the PyTorch extension is missing. Packages Slicer ships are kept
    as they are. Call it on the main thread, at the moment of use (not at import). After it
    installed something, a restart of Slicer may be needed if an older version was imported.
    """
    import slicer  # only here: the rest of this module works without Slicer

    for requirement in requirements or []:
        if normalizeName(parseRequirement(requirement)[0]) == "torch":
            torchRequirement = requirement  # a torch entry in the list sets the version to ask for
    toInstall, kept, notes = pipPlan(requirements)
    torchState, torchMessage = torchStatus(torchRequirement)
    if torchState == "ok" and not toInstall:
        return []

    items = ([f"PyTorch ({torchRequirement}, through the PyTorch extension): {torchMessage}"] if torchState != "ok" else [])
    items += toInstall
    text = ("VQSeg needs these Python packages, which will be downloaded and installed now:\n  "
            + "\n  ".join(items)
            + ("\n\nNot replaced:\n  " + "\n  ".join(kept) if kept else "")
            + ("\n\nLeft out:\n  " + "\n  ".join(notes) if notes else "")
            + "\n\nThis can take several minutes. Install them?")
    ask = confirm if confirm is not None else slicer.util.confirmOkCancelDisplay
    if not ask(text):
        raise InstallDeclined("VQSeg's Python packages were not installed, so VQSeg cannot run yet. "
                              "Press Segment or Fine-tune again to be asked again.")

    installed = []
    if torchState != "ok":
        torchLogic = _pyTorchLogic()
        _name, clauses, _marker = parseRequirement(torchRequirement)
        versionSpec = ",".join(op + v for op, v in clauses) or None
        if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=versionSpec) is None:
            raise DependencyError("PyTorch was not installed; install it in the 'PyTorch Util' module and try again.")
        installed.append(torchRequirement)
    if toInstall:
        with tempfile.TemporaryDirectory(prefix="VQSeg-pip-") as folder:
            constraints = os.path.join(folder, "constraints.txt")
            with open(constraints, "w", encoding="utf-8") as handle:
                handle.write(constraintsText(exclude=[parseRequirement(r)[0] for r in toInstall]))
            _pipInstall(slicer.util.pip_install, toInstall, constraints)
        installed += toInstall
    return installed


def pipPlan(requirements: Optional[List[str]] = None,
            versionOf: Optional[Callable[[str], Optional[str]]] = None) -> Tuple[List[str], List[str], List[str]]:
    """(to install with pip, kept as Slicer ships them, left out with why) for `requirements`.

    Default requirements: CORE_REQUIREMENTS, plus DICOM SEG's unless Slicer ships a pydicom or a
    highdicom too old for it (Slicer's own DICOM modules use them, so they are not replaced). torch is
    never in the plan: the PyTorch extension installs it. `versionOf` as in unmetRequirements.
    """
    versionOf = versionOf or installedVersion
    notes = []
    if requirements is None:
        requirements = list(CORE_REQUIREMENTS)
        tooOld = []
        for requirement in DICOM_SEG_REQUIREMENTS:
            name, clauses, _marker = parseRequirement(requirement)
            shipped = versionOf(name)
            if shipped is not None and not _safelySatisfies(shipped, clauses):
                tooOld.append(f"{name} {shipped}")
        if tooOld:
            notes.append(f"DICOM SEG export, which needs {' and '.join(DICOM_SEG_REQUIREMENTS)} (this Slicer ships "
                         f"{' and '.join(tooOld)}, which {'is' if len(tooOld) == 1 else 'are'} kept): VQSeg writes "
                         "segmentations as .seg.nrrd instead")
        else:
            requirements = requirements + DICOM_SEG_REQUIREMENTS
    pipRequirements = [r for r in requirements if normalizeName(parseRequirement(r)[0]) != "torch"]
    toInstall, kept = [], []
    for requirement, version in unmetRequirements(pipRequirements, versionOf):
        name = normalizeName(parseRequirement(requirement)[0])
        if name in SLICER_SHIPPED and version is not None:
            kept.append(f"{requirement} (Slicer ships {version}; it is kept)")
        else:
            toInstall.append(requirement)
    return toInstall, kept, notes


def constraintsText(exclude: List[str] = (), installed: Optional[Dict[str, str]] = None) -> str:
    """`name==version` for every installed distribution but `exclude` (what is being installed or
    upgraded): pip may add packages but never change these. `installed` (name → version) replaces
    this Python's distributions (to plan for another Slicer)."""
    excluded = {normalizeName(name) for name in exclude}
    pins = {}
    found = installed.items() if installed is not None else (
        (distribution.metadata["Name"], distribution.version) for distribution in importlib.metadata.distributions())
    for name, version in found:
        if not name or not version or normalizeName(name) in excluded:
            continue
        try:
            versionKey(version)
        except ValueError:  # pip refuses a constraints file holding a version it cannot parse
            continue
        # The first distribution on sys.path is the one imported and the one pip sees: it wins.
        pins.setdefault(normalizeName(name), f"{normalizeName(name)}=={version}")
    return "".join(line + "\n" for _name, line in sorted(pins.items()))


def _pyTorchLogic():
    try:
        import PyTorchUtils
    except ImportError as problem:
        raise DependencyError("VQSeg needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, "
                              "restart Slicer, and try again.") from problem
    return PyTorchUtils.PyTorchUtilsLogic()


def _pipInstall(pipInstall, requirements: List[str], constraints: str) -> None:
    # Slicer <= 5.11: pip_install(arguments), a list of pip command-line arguments, so the constraints
    # file goes in as "-c FILE"; 5.12+: pip_install(requirements, constraints=FILE, requester=...) with a progress dialog.
    if _acceptsKeyword(pipInstall, "constraints"):
        pipInstall(list(requirements), constraints=constraints, requester="VQSeg")
    else:
        pipInstall(["-c", constraints, *requirements])


def _acceptsKeyword(function, keyword: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == keyword or p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)
