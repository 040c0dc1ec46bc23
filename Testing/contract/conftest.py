"""Static contract tests of the Slicer module: plain pytest, no Slicer, no Qt."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # contract_checks
from contract_checks import EXTENSION, REPO  # noqa: E402

sys.path.insert(0, str(EXTENSION))  # VQSegLib sits beside VQSeg.py


@pytest.fixture(scope="session")
def moduleSource() -> str:
    return (EXTENSION / "VQSeg.py").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def uiText() -> str:
    return (REPO / "Resources" / "UI" / "VQSeg.ui").read_text(encoding="utf-8")
