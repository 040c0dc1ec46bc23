"""The module's real VQSegLogic drives the real CLI child process on real MRML, through the clinician's loop:

  segment a synthetic chest CT → the model's label becomes a segmentation node on the CT's grid →
  the corrected case goes into a training pool → a second correction updates that pool case →
  the pool case reopens into the scene, voxel for voxel as stored → a 2-iteration CPU fine-tune
  leaves a new model version in the store.

VQSeg.py is imported as in test_parameter_node.py: Slicer's own ScriptedLoadableModule, parameterNodeWrapper
and i18n read from a Slicer clone (slicer_source.py, one release) on the slicer-core wheel. The logic builds
its own CliRunner and finds the child's interpreter itself (locations.pythonExecutable: a `PythonSlicer` on
PATH, as in Slicer); here that PythonSlicer is a two-line launcher for VQSEG_CHILD_PYTHON (default
<repo>/.venv/bin/python, which has torch). The few application pieces the wheel lacks (qt.QTimer,
qt.QSettings, slicer.app) are the stand-ins of logic_stand_ins.py; runs started with waitForCompletion=False
are followed by the logic's own timer, fired by the stand-in event loop on this thread.

Everything is written under tmp_path: VQSEG_HOME (pools, models, drafts) and the runs' work folders.
Skips without the Slicer clone or without the child interpreter. About 30 s on two busy CPU cores.
"""

import importlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicer_source
import vtk
from logic_stand_ins import Application, EventLoop
from mrml_images import oriented_mask, segment_ids

from VQSegLib import segio, segmentation_tags
from VQSegLib.process import DONE, RUNNING

REPO = Path(__file__).resolve().parents[2]
CHILD_PYTHON_ENV = "VQSEG_CHILD_PYTHON"
DEFAULT_CHILD_PYTHON = REPO / ".venv" / "bin" / "python"
SHIPPED_MODEL = REPO / "Resources" / "Models" / "lung-lesion"
SLICER_REF = "v5.12.3"  # one release is enough here; test_parameter_node.py covers each of slicer_source.refs()
POOL = "clinic"
RUN_TIMEOUT_S = 180  # one CLI run on a busy CPU; the whole loop takes about 30 s


def childPython() -> Path:
    """The interpreter for `python -m VQSegCore` (it needs torch, which .venv-slicer has not)."""
    path = Path(os.environ.get(CHILD_PYTHON_ENV) or DEFAULT_CHILD_PYTHON)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"no child interpreter at {path}: run `make install` (it makes .venv with torch), "
                    f"or set {CHILD_PYTHON_ENV} to a Python that has VQSegCore's dependencies")
    return path


@pytest.fixture(scope="module")
def vqseg(tmp_path_factory):
    """VQSeg.py imported against Slicer's Python at one release (skips without the Slicer clone)."""
    refs = slicer_source.refs()
    ref = SLICER_REF if SLICER_REF in refs else refs[0]
    folder = slicer_source.extract(slicer_source.sourceRepository(), ref, tmp_path_factory.mktemp("slicer-source"))
    with slicer_source.slicerPython(folder):
        sys.modules.pop("VQSeg", None)
        try:
            yield importlib.import_module("VQSeg")
        finally:
            sys.modules.pop("VQSeg", None)


@pytest.fixture
def loop(vqseg, monkeypatch):
    """The stand-in event loop, with its QTimer and QSettings in the `qt` module VQSeg.py imported, and slicer.app."""
    eventLoop = EventLoop()
    for name, standIn in eventLoop.qtClasses().items():
        monkeypatch.setattr(vqseg.qt, name, standIn, raising=False)
    monkeypatch.setattr(slicer, "app", Application(), raising=False)
    return eventLoop


@pytest.fixture
def launcher(tmp_path, monkeypatch):
    """`PythonSlicer` on PATH, exec'ing the child interpreter: what locations.pythonExecutable finds in Slicer."""
    child = childPython()
    folder = tmp_path / "bin"
    folder.mkdir()
    path = folder / "PythonSlicer"
    path.write_text(f'#!/bin/sh\nexec "{child}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the machine is small and busy; inherited by the child
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    return path


def synthCt(child: Path, folder: Path):
    """A 96x96x24 synthetic chest CT and its true tumour label, written by the core's own `synth`."""
    ct, truth = folder / "chest.nii.gz", folder / "truth.nii.gz"
    command = [str(child), "-m", "VQSegCore", "synth", str(ct), "--label", str(truth), "--size", "96", "96", "--slices", "24", "--seed", "3"]
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    made = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert made.returncode == 0, made.stderr[-2000:]
    return ct, sitk.GetArrayFromImage(sitk.ReadImage(str(truth)))


def follow(loop, start):
    """Start an action with waitForCompletion=False and run the event loop until its onCompleted was called."""
    completed = []
    run = start(lambda finished, outcome: completed.append((finished, outcome)))
    assert run.state == RUNNING
    ticksBefore = loop.ticks
    loop.processEvents(until=lambda: bool(completed), timeoutSeconds=RUN_TIMEOUT_S)
    assert len(completed) == 1
    finished, outcome = completed[0]
    assert finished is run and run.state == DONE, (run.state, run.errorMessage, run.logLines[-20:])
    assert loop.ticks > ticksBefore  # the logic's poll timer followed it
    assert not os.path.exists(run.workDir)
    return run, outcome


def segmentMask(segmentationNode, segmentId, referenceVolumeNode):
    """One segment as a [k, j, i] 0/1 array on the reference volume's grid, with the grid of the export."""
    scene = segmentationNode.GetScene()
    labelNode = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segmentId)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentationNode, ids, labelNode, referenceVolumeNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    mask, labelGrid = slicer.util.arrayFromVolume(labelNode).copy(), grid(labelNode)
    scene.RemoveNode(labelNode)
    return mask, labelGrid


def grid(volumeNode):
    """(dimensions, spacing, origin, 3x3 IJK→RAS directions) of a volume node."""
    directions = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASDirectionMatrix(directions)
    return (tuple(volumeNode.GetImageData().GetDimensions()), np.array(volumeNode.GetSpacing()), np.array(volumeNode.GetOrigin()),
            np.array([[directions.GetElement(r, c) for c in range(3)] for r in range(3)]))


def assertSameGrid(got, expected, tolerance):
    assert got[0] == expected[0]
    for gotPart, expectedPart in zip(got[1:], expected[1:]):
        np.testing.assert_allclose(gotPart, expectedPart, atol=tolerance)


def referenceGeometry(segmentationNode):
    """The segmentation's reference image geometry (the grid its labelmaps are made on) as a grid()."""
    serialized = segmentationNode.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    image = slicer.vtkOrientedImageData()
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(serialized, image, False)
    directions = [[0.0] * 3 for _ in range(3)]
    image.GetDirections(directions)
    return tuple(image.GetDimensions()), np.array(image.GetSpacing()), np.array(image.GetOrigin()), np.array(directions)


def readArray(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def caseMeta(caseFolder: Path) -> dict:
    return json.loads((caseFolder / "meta.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_segment_correct_pool_update_reopen_finetune_with_the_real_cli(vqseg, scene, loop, launcher, tmp_path, monkeypatch):
    home = tmp_path / "vqseg-home"
    monkeypatch.setenv("VQSEG_HOME", str(home))
    workFolders = tmp_path / "work-folders"  # the runs' temporary folders (runner.createWorkDir) go here, not to /tmp
    workFolders.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(workFolders))
    sliceComposite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")  # what a Slicer layout puts in its scene
    sliceComposite.SetLayoutName("Red")

    ctPath, truth = synthCt(childPython(), tmp_path)
    ctNode = segio.loadVolumeFromFile(scene, str(ctPath), name="chest")
    ctArray = slicer.util.arrayFromVolume(ctNode).copy()
    ctGrid = grid(ctNode)
    assert ctGrid[0] == (96, 96, 24) and truth.shape == ctArray.shape and truth.sum() > 100

    logic = vqseg.VQSegLogic()
    assert logic.chosenHomeFolder() == "" and logic.homeFolder() == str(home)  # the stand-in settings hold no home: $VQSEG_HOME
    card = json.loads((SHIPPED_MODEL / "card.json").read_text(encoding="utf-8"))
    classes = card["config"]["classes"]
    classIds = [c["id"] for c in classes]
    assert classIds == ["lung_tumour"]
    tumourValue = classes[0]["value"]

    # ---- Segment (as the button does: waitForCompletion=False, followed by the logic's timer) ----
    events = []
    run, outcome = follow(loop, lambda onCompleted: logic.segment(
        ctNode, device="cpu", onEvent=lambda run, event: events.append(event), onCompleted=onCompleted, waitForCompletion=False))
    assert run.command[0] == str(launcher)  # the logic chose the interpreter itself (PythonSlicer on PATH)
    assert run.command[1:5] == ["-m", "VQSegCore", "--events", "--cancel-file"] and "segment" in run.command
    assert any(e["event"] == "progress" and e.get("stage") == "segment" for e in events) and events[-1]["event"] == "result"
    assert Path(outcome.result["model"]).resolve() == SHIPPED_MODEL.resolve()  # segment uses the shipped default model
    segmentationNode = outcome.segmentationNode
    assert outcome.uncertaintyNode is None and outcome.roiRotated is False and outcome.summary
    assert scene.GetNodeByID(segmentationNode.GetID()) is segmentationNode
    assert segment_ids(segmentationNode) == classIds
    tumourSegment = segmentationNode.GetSegmentation().GetSegment("lung_tumour")
    assert tumourSegment.GetName() == classes[0]["name"]
    np.testing.assert_allclose(tumourSegment.GetColor(), classes[0]["color"], atol=1e-6)
    assert [c["id"] for c in segmentation_tags.classesOf(segmentationNode)] == classIds
    # On the CT's grid: the reference geometry, and the segment exported on it.
    assert segio.segmentationGeometryMatches(segmentationNode, ctNode, tolerance=1e-6)
    assertSameGrid(referenceGeometry(segmentationNode), ctGrid, 1e-6)
    modelMask, maskGrid = segmentMask(segmentationNode, "lung_tumour", ctNode)
    assertSameGrid(maskGrid, ctGrid, 1e-6)
    assert modelMask.shape == ctArray.shape
    assert modelMask.sum() == outcome.result["classes"][0]["voxels"] > 0
    # The model's untouched label is kept as a draft under the temporary home, voxel for voxel what the scene holds.
    draftPath, draftModel = segmentation_tags.draftOf(segmentationNode)
    assert Path(draftPath).parent == home / "drafts" and draftModel == "lung-lesion@shipped"
    np.testing.assert_array_equal(readArray(draftPath), modelMask * tumourValue)

    # ---- First correction (the true tumour, as one Segment Editor stroke), then Add to pool (blocking, as scripts do) ----
    corrected = truth.astype(np.uint8)
    assert (corrected != modelMask).sum() > 100  # a real correction, not a no-op
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        oriented_mask(corrected, ctNode), segmentationNode, "lung_tumour", slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    sceneMask, _grid = segmentMask(segmentationNode, "lung_tumour", ctNode)
    np.testing.assert_array_equal(sceneMask, corrected)

    added = logic.addToPool(segmentationNode, POOL)
    assert (added.action, added.status, added.ignoredSegmentIds) == ("add", "labelled", [])
    caseId = added.caseId
    caseFolder = home / "pools" / POOL / "cases" / caseId
    assert (home / "pools" / POOL / "pool.json").is_file() and caseFolder.is_dir()
    assert sorted(p.name for p in (home / "pools" / POOL / "cases").iterdir()) == [caseId]
    np.testing.assert_array_equal(readArray(caseFolder / "label.nii.gz"), sceneMask * tumourValue)
    np.testing.assert_array_equal(readArray(caseFolder / "image.nii.gz"), ctArray)
    np.testing.assert_array_equal(readArray(caseFolder / "draft.nii.gz"), modelMask * tumourValue)
    meta = caseMeta(caseFolder)
    assert meta["status"] == "labelled" and meta["source_name"] == "chest" and meta["draft_model"] == "lung-lesion@shipped"
    assert meta["edited_voxels"] == {"lung_tumour": int((corrected != modelMask).sum())}
    assert meta["geometry"]["size"] == list(ctGrid[0])
    assert not os.path.exists(draftPath)  # the pool keeps its own copy of the draft
    assert segmentation_tags.poolCaseOf(segmentationNode) == (POOL, caseId)
    assert segmentation_tags.draftOf(segmentationNode)[0] == ""

    # ---- Second correction: erase the tumour's first slice, paint a missed block; Add to pool updates the case ----
    second = corrected.copy()
    firstSlice = int(np.flatnonzero(second.any(axis=(1, 2)))[0])
    second[firstSlice] = 0
    second[2:5, 10:14, 10:15] = 1
    assert (second != corrected).sum() > 50
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        oriented_mask(second, ctNode), segmentationNode, "lung_tumour", slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    sceneMask, _grid = segmentMask(segmentationNode, "lung_tumour", ctNode)
    np.testing.assert_array_equal(sceneMask, second)

    imageBefore = (caseFolder / "image.nii.gz").read_bytes()
    _run, updated = follow(loop, lambda onCompleted: logic.addToPool(
        segmentationNode, POOL, onCompleted=onCompleted, waitForCompletion=False))
    assert (updated.action, updated.caseId, updated.status) == ("update", caseId, "labelled")
    assert sorted(p.name for p in (home / "pools" / POOL / "cases").iterdir()) == [caseId]  # no second case
    np.testing.assert_array_equal(readArray(caseFolder / "label.nii.gz"), second * tumourValue)
    assert (caseFolder / "image.nii.gz").read_bytes() == imageBefore
    np.testing.assert_array_equal(readArray(caseFolder / "draft.nii.gz"), modelMask * tumourValue)  # still the model's
    assert [entry["op"] for entry in caseMeta(caseFolder)["history"]] == ["add", "update_label"]

    # ---- Reopen the pool case (as a double click in the pool table does) ----
    _run, reopened = follow(loop, lambda onCompleted: logic.reopenCase(POOL, caseId, onCompleted=onCompleted, waitForCompletion=False))
    assert reopened.caseId == caseId and reopened.volumeNode is not ctNode
    assert reopened.volumeNode.GetName() == caseId and scene.GetNodeByID(reopened.volumeNode.GetID()) is reopened.volumeNode
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(reopened.volumeNode), ctArray)
    assertSameGrid(grid(reopened.volumeNode), ctGrid, 1e-4)  # NIfTI keeps the geometry as float32
    assert segio.segmentationGeometryMatches(reopened.segmentationNode, reopened.volumeNode, tolerance=1e-6)
    assert segment_ids(reopened.segmentationNode) == classIds
    reopenedMask, maskGrid = segmentMask(reopened.segmentationNode, "lung_tumour", reopened.volumeNode)
    np.testing.assert_array_equal(reopenedMask, second)
    np.testing.assert_array_equal(reopenedMask * tumourValue, readArray(caseFolder / "label.nii.gz"))
    assertSameGrid(maskGrid, ctGrid, 1e-4)
    assert segmentation_tags.poolCaseOf(reopened.segmentationNode) == (POOL, caseId)
    assert [c["id"] for c in segmentation_tags.classesOf(reopened.segmentationNode)] == classIds
    assert sliceComposite.GetBackgroundVolumeID() == reopened.volumeNode.GetID() and sliceComposite.GetForegroundVolumeID() is None

    # ---- Fine-tune 2 iterations on the CPU (blocking); a new version appears in the store under the temporary home ----
    finetuned = logic.finetune(POOL, iterations=2, device="cpu")
    assert (finetuned["model"], finetuned["version"], finetuned["parent"], finetuned["iterations"]) == ("lung-lesion", "v0001", "shipped", 2)
    assert finetuned["promoted"] is False and finetuned["active"] == "shipped"  # one labelled case: nothing held out, kept as a candidate
    versionFolder = home / "models" / "lung-lesion" / "v0001"
    assert (versionFolder / "weights.safetensors").stat().st_size > 0
    newCard = json.loads((versionFolder / "card.json").read_text(encoding="utf-8"))
    assert [c["id"] for c in newCard["config"]["classes"]] == classIds
    assert newCard["training"]["iterations_done"] == 2
    assert sorted(p.name for p in (home / "models" / "lung-lesion").iterdir() if p.name.startswith("v")) == ["v0001"]

    assert not logic.isBusy() and loop.timers == []  # no run going, no timer left
    assert list(workFolders.iterdir()) == []  # every run removed its work folder
