"""The Slicer-side runner and dependency helpers, tested with plain pytest (no slicer, no qt)."""

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "VQSegExtension"))  # VQSegLib sits beside VQSeg.py


@pytest.fixture
def fakeCoreSearchPath(tmp_path):
    """A folder holding a fake `VQSegCore` package whose __main__ is fake_cli.py."""
    package = tmp_path / "fakecore" / "VQSegCore"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(Path(__file__).with_name("fake_cli.py"), package / "__main__.py")
    return str(package.parent)
