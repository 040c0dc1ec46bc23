"""Dependency checks from metadata, and installMissing with a fake `slicer` and `PyTorchUtils`."""

import sys
import types
from pathlib import Path

import pytest

from VQSegLib import dependencies
from VQSegLib.dependencies import (CORE_REQUIREMENTS, DICOM_SEG_REQUIREMENTS, DependencyError, InstallDeclined, constraintsText,
                                   installMissing, missingPackages, parseRequirement, torchStatus, versionSatisfies)

REPO = Path(__file__).resolve().parents[2]


def test_core_requirements_are_pyproject_dependencies_without_torch():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(CORE_REQUIREMENTS + DICOM_SEG_REQUIREMENTS) == sorted(r for r in declared if parseRequirement(r)[0] != "torch")
    assert dependencies.TORCH_REQUIREMENT in declared


def test_missing_packages_absent_too_old_and_present():
    requirements = ["pytest>=7", "PyTest>=9999", "no-such-package-vqseg>=1", "numpy", "monai[scipy]>=1.4", "no-such-package-vqseg; python_version < '3'"]
    assert missingPackages(requirements) == ["PyTest>=9999", "no-such-package-vqseg>=1"]


@pytest.mark.parametrize("version, spec, ok", [
    ("2.13.0+cpu", ">=2.4", True),
    ("2.3.1", ">=2.4", False),
    ("1.26.4", ">=1.24,<2", True),
    ("2.4.6", ">=1.24,<2", False),
    ("2.0.0rc1", ">=2.0", False),
    ("2.0.0", ">=2.0.0rc1", True),
    ("1.0.dev3", "<1.0a1", True),
    ("1.0.post2", ">1.0", True),
    ("3.0.1", "==3.0.1", True),
    ("3.0", "==3.0.0", True),
    ("1.4.2", "~=1.4", True),
    ("2.0", "~=1.4", False),
    ("1.4.2", "==1.4.*", True),
    ("1.5", "!=1.4.*", True),
])
def test_version_comparison(version, spec, ok):
    assert versionSatisfies(version, parseRequirement("x" + spec)[1]) is ok


def test_torch_status_never_imports_torch(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    state, message = torchStatus()
    assert state == "ok" and "PyTorch" in message  # the main venv has torch
    assert "torch" not in sys.modules
    assert torchStatus("torch>=9999")[0] == "missing"
    monkeypatch.setattr(dependencies.importlib.util, "find_spec", lambda name: None)
    assert torchStatus()[0] == "missing"


def _read(path):
    """The constraints file's text at the time of the call (it is a temporary file)."""
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class FakeSlicer:
    """What installMissing touches: slicer.util.pip_install and confirmOkCancelDisplay, and PyTorchUtils."""

    def __init__(self, monkeypatch, modern=True, withPyTorch=True):
        self.calls = []
        util = types.SimpleNamespace(confirmOkCancelDisplay=lambda text: self.calls.append(("default confirm", text)) or True)
        if modern:  # Slicer 5.12: pip_install(requirements, constraints=None, ..., requester=None, ...)
            def pipInstall(requirements, constraints=None, no_deps_requirements=None, skip_packages=None, blocking=True,
                           show_progress=True, requester=None, parent=None, logCallback=None, completedCallback=None):
                self.calls.append(("pip", requirements, {"constraints": _read(constraints), "requester": requester}))
            util.pip_install = pipInstall
        else:  # Slicer <= 5.11: pip_install(requirements), a list of pip arguments
            util.pip_install = lambda requirements: self.calls.append(("pip", requirements, {"-c": _read(requirements[1])}))
        monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace(util=util))
        if withPyTorch:
            calls = self.calls

            class PyTorchUtilsLogic:
                def installTorch(self, askConfirmation=False, forceComputationBackend=None,
                                 torchVersionRequirement=None, torchvisionVersionRequirement=None):
                    calls.append(("torch", askConfirmation, torchVersionRequirement))
                    return types.SimpleNamespace(__version__="2.5.0")

            monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
        else:
            monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import raises ImportError


@pytest.fixture
def torchMissing(monkeypatch):
    monkeypatch.setattr(dependencies, "torchStatus", lambda requirement=dependencies.TORCH_REQUIREMENT: ("missing", "PyTorch is not installed."))


REQUIREMENTS = ["pytest>=7", "no-such-package-vqseg>=1", "numpy>=9999", "another-missing-one[extra]>=0.1"]


def test_declined_installs_nothing(monkeypatch, torchMissing):
    slicer = FakeSlicer(monkeypatch)
    asked = []

    def decline(text):
        asked.append(text)
        return False

    with pytest.raises(InstallDeclined, match="not installed"):
        installMissing(REQUIREMENTS, confirm=decline)
    assert len(asked) == 1 and slicer.calls == []
    assert "PyTorch" in asked[0] and "no-such-package-vqseg>=1" in asked[0]


def test_accepted_installs_torch_first_then_pip_without_slicer_packages(monkeypatch, torchMissing):
    slicer = FakeSlicer(monkeypatch)
    asked = []
    installed = installMissing(REQUIREMENTS, confirm=lambda text: asked.append(text) or True)
    assert slicer.calls == [
        ("torch", False, ">=2.4"),
        ("pip", ["no-such-package-vqseg>=1", "another-missing-one[extra]>=0.1"], {"constraints": constraintsText(), "requester": "VQSeg"}),
    ]
    assert installed == ["torch>=2.4", "no-such-package-vqseg>=1", "another-missing-one[extra]>=0.1"]
    assert len(asked) == 1 and "numpy>=9999" in asked[0] and "kept" in asked[0]  # shown, never reinstalled


def test_old_slicer_pip_install_gets_no_keywords_and_torch_entry_sets_the_version(monkeypatch, torchMissing):
    slicer = FakeSlicer(monkeypatch, modern=False)
    installed = installMissing(["torch>=2.6", "no-such-package-vqseg"], confirm=lambda text: True)
    constraints = slicer.calls[1][2]["-c"]
    assert slicer.calls == [("torch", False, ">=2.6"), ("pip", ["-c", slicer.calls[1][1][1], "no-such-package-vqseg"], {"-c": constraints})]
    assert "numpy==" in constraints and "pytest==" in constraints
    assert installed == ["torch>=2.6", "no-such-package-vqseg"]


def test_nothing_missing_asks_nothing(monkeypatch):
    slicer = FakeSlicer(monkeypatch)
    assert installMissing(["pytest>=7", "numpy>=9999"], confirm=lambda text: pytest.fail("asked")) == []
    assert slicer.calls == []


def test_default_confirm_is_slicers_dialog(monkeypatch):
    slicer = FakeSlicer(monkeypatch)
    assert installMissing(["no-such-package-vqseg"]) == ["no-such-package-vqseg"]
    assert [call[0] for call in slicer.calls] == ["default confirm", "pip"]


def test_missing_pytorch_extension_is_a_clear_error(monkeypatch, torchMissing):
    slicer = FakeSlicer(monkeypatch, withPyTorch=False)
    with pytest.raises(DependencyError, match="PyTorch extension"):
        installMissing(["no-such-package-vqseg"], confirm=lambda text: True)
    assert [call[0] for call in slicer.calls] == []  # pip waits for torch


def test_constraints_pin_every_installed_distribution_but_what_is_installed(monkeypatch):
    installed = {"numpy": "1.26.4", "torch": "2.7.0+cu118", "SimpleITK": "2.4.1", "pydicom": "2.4.4", "matplotlib": "3.5.0"}
    fake = [types.SimpleNamespace(metadata={"Name": name}, version=version) for name, version in installed.items()]
    monkeypatch.setattr(dependencies.importlib.metadata, "distributions", lambda: fake)
    text = constraintsText(exclude=["Matplotlib"])
    assert text.splitlines() == ["numpy==1.26.4", "pydicom==2.4.4", "simpleitk==2.4.1", "torch==2.7.0+cu118"]


def test_an_old_shipped_pydicom_leaves_dicom_seg_out_and_says_so(monkeypatch):
    """Slicer 5.10 ships pydicom 2.4.4; highdicom >= 0.28 needs pydicom >= 3.0.1: both are left out, pydicom is kept."""
    slicer = FakeSlicer(monkeypatch)
    real_version = dependencies.installedVersion
    versions = {"pydicom": "2.4.4", "highdicom": None, "slicerio": None}
    monkeypatch.setattr(dependencies, "installedVersion", lambda name: versions[name] if name in versions else real_version(name))
    asked = []
    installed = installMissing(confirm=lambda text: asked.append(text) or True)
    pip = [call for call in slicer.calls if call[0] == "pip"]
    assert "slicerio>=1.1" in pip[0][1] and not any(r.startswith(("highdicom", "pydicom")) for r in pip[0][1])
    assert "highdicom>=0.28" not in installed
    assert "Left out" in asked[0] and "DICOM SEG" in asked[0] and "2.4.4" in asked[0]
    assert "\npydicom==" in pip[0][2]["constraints"]  # the installed pydicom is pinned: no dependency can replace it


def test_slicer_5_12s_highdicom_is_kept_and_dicom_seg_left_out(monkeypatch):
    """Slicer 5.12 ships highdicom 0.27 for its own DICOM plugin: never upgraded, DICOM SEG left out."""
    versions = {"pydicom": "3.0.2", "highdicom": "0.27.0", "numpy": "2.4.6", "scipy": "1.17.1", "simpleitk": "2.5.5"}
    to_install, kept, notes = dependencies.pipPlan(versionOf=lambda name: versions.get(dependencies.normalizeName(name)))
    assert not any(r.startswith(("highdicom", "pydicom")) for r in to_install) and "monai[scipy]>=1.4" in to_install
    assert notes and "highdicom 0.27.0" in notes[0] and "pydicom" not in notes[0].split("ships")[1]
    constraints = dependencies.constraintsText(exclude=[dependencies.parseRequirement(r)[0] for r in to_install],
                                               installed={"highdicom": "0.27.0", "torch": "2.7.0"})
    assert constraints.splitlines() == ["highdicom==0.27.0", "torch==2.7.0"]


def test_without_pydicom_the_dicom_seg_packages_are_installed(monkeypatch):
    slicer = FakeSlicer(monkeypatch)
    real_version = dependencies.installedVersion
    versions = {"pydicom": None, "highdicom": None}
    monkeypatch.setattr(dependencies, "installedVersion", lambda name: versions[name] if name in versions else real_version(name))
    installMissing(confirm=lambda text: True)
    pip = [call for call in slicer.calls if call[0] == "pip"]
    assert DICOM_SEG_REQUIREMENTS == [r for r in pip[0][1] if r.startswith(("highdicom", "pydicom"))]
