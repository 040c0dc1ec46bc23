"""VQSegParameterNode with Slicer's real parameter node wrapper, in a real vtkMRMLScriptedModuleNode.

VQSeg.py is imported with Slicer's own parameterNodeWrapper, i18n and ScriptedLoadableModule (read from a
Slicer git clone at run time, see slicer_source.py) on top of the slicer-core wheel; the parameter node
comes from VQSegLogic.getParameterNode, as in Slicer. Every test runs once per Slicer release in
slicer_source.refs(), and skips without the clone (CI), except the test of that skip.
"""

import ast
import importlib
import sys
from pathlib import Path

import pytest
import slicer
import slicer_source

from VQSegLib import home

VQSEG_PY = Path(__file__).resolve().parents[2] / "VQSegExtension" / "VQSeg.py"

# Read from VQSeg.py by hand, so that a changed default fails here until it is meant.
EXPECTED_DEFAULTS = {"inputVolume": None, "roi": None, "modelName": "", "device": "auto", "showUncertainty": False,
                     "segmentation": None, "poolName": "default", "budgetMinutes": 10}
# How each default is stored in the scripted module node (node references store "" plus a reference).
EXPECTED_STORED = {"modelName": "", "device": "auto", "showUncertainty": "False", "poolName": "default", "budgetMinutes": "10"}
# Node-reference parameters: (the class they take, classes they must refuse).
NODE_PARAMETERS = {
    "inputVolume": ("vtkMRMLScalarVolumeNode", ("vtkMRMLSegmentationNode", "vtkMRMLMarkupsROINode", "vtkMRMLModelNode")),
    "roi": ("vtkMRMLMarkupsROINode", ("vtkMRMLMarkupsFiducialNode", "vtkMRMLScalarVolumeNode")),
    "segmentation": ("vtkMRMLSegmentationNode", ("vtkMRMLLabelMapVolumeNode", "vtkMRMLScalarVolumeNode")),
}


def declaredDefaults(className="VQSegParameterNode"):
    """{field: default} as written in VQSeg.py's class body (None where there is no `= value`), without importing it."""
    for node in ast.walk(ast.parse(VQSEG_PY.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef) and node.name == className:
            return {item.target.id: ast.literal_eval(item.value) if item.value is not None else None
                    for item in node.body if isinstance(item, ast.AnnAssign)}
    raise AssertionError(f"no class {className} in {VQSEG_PY}")


@pytest.fixture(scope="module", params=slicer_source.refs())
def vqseg(request, tmp_path_factory):
    """The VQSeg module, imported against Slicer's Python at one release."""
    folder = slicer_source.extract(slicer_source.sourceRepository(), request.param, tmp_path_factory.mktemp("slicer-source"))
    with slicer_source.slicerPython(folder):
        sys.modules.pop("VQSeg", None)
        try:
            module = importlib.import_module("VQSeg")
            assert module.parameterNodeWrapper.__module__ == "slicer.parameterNodeWrapper.wrapper"
            assert Path(sys.modules["slicer.parameterNodeWrapper"].__file__).is_relative_to(folder)
            yield module
        finally:
            sys.modules.pop("VQSeg", None)


@pytest.fixture
def parameters(vqseg, scene):
    return vqseg.VQSegLogic().getParameterNode()


def assertRefused(parameters, name, value, exception, match):
    """Setting `value` raises `exception`, and neither the wrapper nor the stored parameter changes."""
    before, stored = getattr(parameters, name), parameters.parameterNode.GetParameter(name)
    with pytest.raises(exception, match=match):
        setattr(parameters, name, value)
    assert getattr(parameters, name) == before and parameters.parameterNode.GetParameter(name) == stored


def test_the_parameter_node_is_the_modules_singleton_scripted_module_node(vqseg, scene, parameters):
    node = parameters.parameterNode
    assert isinstance(node, slicer.vtkMRMLScriptedModuleNode) and scene.GetNodeByID(node.GetID()) is node
    assert (node.GetSingletonTag(), node.GetAttribute("ModuleName")) == ("VQSeg", "VQSeg")
    assert vqseg.VQSegLogic().getParameterNode().parameterNode is node  # the same node, not a second one
    assert scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1


def test_every_parameter_starts_at_its_declared_default(vqseg, parameters):
    declared = declaredDefaults()
    assert declared == EXPECTED_DEFAULTS
    assert set(vqseg.VQSegParameterNode.allParameters) == set(declared)
    node = parameters.parameterNode
    for name, default in declared.items():
        assert vqseg.VQSegParameterNode.allParameters[name].default.value == default, name
        assert parameters.default(name).value == default, name
        value = getattr(parameters, name)
        assert value == default and type(value) is type(default), name
        assert node.HasParameter(name), name  # written when the node was wrapped
    for name, stored in EXPECTED_STORED.items():
        assert node.GetParameter(name) == stored, name
    for name in NODE_PARAMETERS:
        assert node.GetParameter(name) == "" and node.GetNodeReferenceID(name) is None, name


def test_the_declared_range_and_choices_are_the_wrappers_validators(vqseg):
    validators = {name: info.serializer.validators for name, info in vqseg.VQSegParameterNode.allParameters.items()}
    ranges = [v for v in validators["budgetMinutes"] if type(v).__name__ == "WithinRange"]
    assert [(r.minimum, r.maximum) for r in ranges] == [(1, 480)]
    choices = [v for v in validators["device"] if type(v).__name__ == "Choice"]
    assert [list(c.choices) for c in choices] == [["auto", "cpu", "cuda"]] == [list(home.DEVICE_CHOICES)]


def test_budgets_outside_one_to_480_minutes_or_not_int_are_refused(parameters):
    for minutes in (0, -5, 481, 10_000):
        assertRefused(parameters, "budgetMinutes", minutes, ValueError, r"within range \[1, 480\]")
    for notAnInt in (10.5, "30"):
        assertRefused(parameters, "budgetMinutes", notAnInt, TypeError, "must be of type")
    assertRefused(parameters, "budgetMinutes", None, ValueError, "must not be None")
    for minutes in (1, 480, 45):  # the bounds are inclusive
        parameters.budgetMinutes = minutes
        assert parameters.budgetMinutes == minutes and parameters.parameterNode.GetParameter("budgetMinutes") == str(minutes)


def test_devices_outside_the_choices_are_refused(parameters):
    for device in ("gpu", "CUDA", "mps", ""):
        assertRefused(parameters, "device", device, ValueError, "must be in one of the following")
    assertRefused(parameters, "device", 1, TypeError, "must be of type")  # the str check runs before the choice
    assertRefused(parameters, "device", None, ValueError, "must not be None")
    for device in home.DEVICE_CHOICES:
        parameters.device = device
        assert parameters.device == device == parameters.parameterNode.GetParameter("device")


def test_text_and_flag_parameters_refuse_other_types(parameters):
    for name in ("modelName", "poolName"):
        assertRefused(parameters, name, None, ValueError, "must not be None")
        assertRefused(parameters, name, 3, TypeError, "must be of type")
    for notABool in ("True", 1):
        assertRefused(parameters, "showUncertainty", notABool, TypeError, "must be of type")
    parameters.modelName, parameters.poolName, parameters.showUncertainty = "vqseg-lung@v3", "/data/pool", True
    node = parameters.parameterNode
    assert (node.GetParameter("modelName"), node.GetParameter("poolName"), node.GetParameter("showUncertainty")) == (
        "vqseg-lung@v3", "/data/pool", "True")


def test_node_parameters_take_their_class_and_refuse_others(vqseg, scene, parameters):
    for name, (rightClass, wrongClasses) in NODE_PARAMETERS.items():
        right = scene.AddNewNodeByClass(rightClass, name)
        parameters.setValue(name, right)
        assert getattr(parameters, name) is right
        assert parameters.parameterNode.GetNodeReferenceID(name) == right.GetID()
        for wrongClass in wrongClasses:
            assertRefused(parameters, name, scene.AddNewNodeByClass(wrongClass), TypeError, "must be of type")
        assertRefused(parameters, name, right.GetID(), TypeError, "must be of type")  # an ID is not a node
        assert getattr(parameters, name) is right
    # isinstance, as the wrapper checks: a labelmap is a scalar volume (the panel's selector hides it, scripts can set it).
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    parameters.inputVolume = labelmap
    assert parameters.inputVolume is labelmap
    parameters.roi = None  # "no ROI": the reference is removed
    assert parameters.roi is None and parameters.parameterNode.GetNodeReferenceID("roi") is None


def test_values_survive_a_second_wrapper_and_a_scene_saved_and_loaded(vqseg, scene, parameters):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    box = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumour")
    chosen = {"inputVolume": volume, "roi": box, "segmentation": segmentation, "modelName": "vqseg-lung@v2",
              "device": "cpu", "showUncertainty": True, "poolName": "clinic", "budgetMinutes": 90}
    for name, value in chosen.items():
        parameters.setValue(name, value)

    def assertChosen(wrapped, nodeScene):
        for name, value in chosen.items():
            got = getattr(wrapped, name)
            if name in NODE_PARAMETERS:
                assert got.GetID() == value.GetID() and got.GetName() == value.GetName() and got.GetScene() is nodeScene, name
            else:
                assert got == value, name

    assertChosen(vqseg.VQSegParameterNode(parameters.parameterNode), scene)  # read from the MRML node, not a cache

    scene.SetSaveToXMLString(1)
    assert scene.Commit()
    loaded = slicer.vtkMRMLScene()
    loaded.SetLoadFromXMLString(1)
    loaded.SetSceneXMLString(scene.GetSceneXMLString())
    assert loaded.Import()
    try:
        loadedNode = loaded.GetSingletonNode("VQSeg", "vtkMRMLScriptedModuleNode")
        assert loadedNode is not None
        assertChosen(vqseg.VQSegParameterNode(loadedNode), loaded)
    finally:
        loaded.Clear(True)


def test_without_the_slicer_clone_the_tests_skip(tmp_path, monkeypatch):
    monkeypatch.setenv(slicer_source.SOURCE_ENV, str(tmp_path / "no-clone"))
    assert slicer_source.sourceRepository() == tmp_path / "no-clone"
    with pytest.raises(pytest.skip.Exception, match=slicer_source.SOURCE_ENV):
        slicer_source.extract(slicer_source.sourceRepository(), "v5.12.3", tmp_path)
