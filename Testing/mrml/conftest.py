"""Real MRML (the `slicer-core` wheel) for the Slicer adapter: run with `make test-mrml`.

Without `slicer` (the main .venv) the whole folder is skipped here, before any test module is
imported. Run it with `--confcutdir Testing/mrml` so that Testing/conftest.py (core fixtures that
need the core's dependencies) is not loaded.
"""

import sys
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel: make test-mrml")
if not hasattr(slicer, "vtkMRMLScene"):  # a stand-in `slicer` left in sys.modules by another suite
    pytest.skip("needs the real slicer-core wheel, not a stand-in: make test-mrml", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
for folder in (REPO, REPO / "VQSegExtension", Path(__file__).resolve().parent):  # VQSegCore (the pool), VQSegLib, mrml_images
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# Slicer registers these at startup; slicer-core does not, and AddSegment fails without them.
_converters = slicer.vtkSegmentationConverterFactory.GetInstance()
_converters.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
_converters.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


@pytest.fixture
def scene():
    """A fresh scene with what Slicer's always holds (default colour tables, the subject hierarchy),
    also set as `slicer.mrmlScene`."""
    mrml_scene = slicer.vtkMRMLScene()
    color_logic = slicer.vtkMRMLColorLogic()
    color_logic.SetMRMLScene(mrml_scene)
    slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_scene)
    slicer.mrmlScene = mrml_scene
    yield mrml_scene
    color_logic.SetMRMLScene(None)
    mrml_scene.Clear(True)
    slicer.mrmlScene = None
