"""VQSeg: segment lung tumours in CT, correct them, collect the corrections, fine-tune with one button.

The module is thin glue around the `VQSegCore` command line, which runs as a child process
(docs/architecture.md §1): the GUI never imports torch, stays responsive, and can cancel. Files go through
VQSegLib.segio; runs through VQSegLib.process; everything that can be tested without Slicer
(argument lists, ROI boxes, result texts, folders) lives in small VQSegLib modules.
Python 3.9 syntax (Slicer 5.8 may load it; 5.10 is the target).
"""

import datetime
import importlib
import logging
import os
import shutil
import sys
from typing import Annotated, Callable, List, NamedTuple, Optional

import ctk
import qt
import vtk

import slicer
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from VQSegLib import cli_arguments, dependencies, drafts, home, model_card, result_text, roi, sample_data, scene, segio, segmentation_tags
from VQSegLib.locations import ensureCoreImportable, findSupportFolders, pythonExecutable
from VQSegLib.process import CANCELLED, DONE, CliRunner, describeProgress, progressFraction
from VQSegLib.runs import RunController, VQSegRunError  # noqa: F401 - VQSegRunError is what blocking calls raise

MODULE_FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_URL = "https://github.com/VQSeg/VQSeg"  # also EXTENSION_HOMEPAGE in the top-level CMakeLists.txt


#
# VQSeg
#


class VQSeg(ScriptedLoadableModule):
    """Module description shown by Slicer (help, acknowledgement, icon)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("VQSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations", "SegmentEditor"]
        self.parent.contributors = ["VQSeg team"]
        self.parent.helpText = _("""
Segments lung tumours in CT with VQ-Seg (vector-quantized token perturbation), opens the result in the
Segment Editor for correction, collects corrected cases in a training pool and fine-tunes the model
semi-supervised with one button. New model versions are checked on held-out cases before they are used,
and can be rolled back. See the <a href="{url}#readme">README</a> for the workflow and the command line.
""").format(url=PROJECT_URL)
        self.parent.acknowledgementText = _("""
VQ-Seg method: vector-quantized token perturbation for semi-supervised medical image segmentation.
Lung nodule data: LIDC-IDRI (TCIA, CC BY 3.0), Armato SG III et al., Med. Phys. 38:915-931, 2011.
The authors acknowledge the National Cancer Institute and the Foundation for the National Institutes of Health,
and their critical role in the creation of the free publicly available LIDC/IDRI Database used in this study.
""")
        # In a source checkout Resources/ is one folder up, where the base class does not look for the icon.
        try:
            iconPath = os.path.join(findSupportFolders(MODULE_FOLDER).resources, "Icons", "VQSeg.png")
            if os.path.isfile(iconPath):
                self.parent.icon = qt.QIcon(iconPath)
                # Sample Data is loaded only when Slicer has started: register the synthetic chest CT then.
                slicer.app.connect("startupCompleted()", lambda: _registerSampleData(iconPath))
        except FileNotFoundError:
            pass  # the widget explains what is missing


def _registerSampleData(thumbnailPath: str) -> None:
    supportFolders = findSupportFolders(MODULE_FOLDER)
    ensureCoreImportable(supportFolders.coreSearchPath)  # the phantom is made by VQSegCore.synth
    try:
        sample_data.register(thumbnailPath)
    except ImportError:  # Sample Data is not loaded (e.g. a custom Slicer without it)
        logging.info("VQSeg: Sample Data is not available; the synthetic chest CT sample is not registered")


#
# VQSegParameterNode
#


@parameterNodeWrapper
class VQSegParameterNode:
    """What the user chose; saved with the scene.

    inputVolume - the CT to segment.
    roi - optional box that limits the segmentation (its world bounding box if rotated).
    modelName - "" for the default model's active version, "NAME" for a model's active version, "NAME@VERSION".
    device - where the model runs: auto (GPU if there is one), cpu or cuda.
    showUncertainty - also compute an uncertainty map and show it as a heat overlay.
    segmentation - the segmentation to fill; a new one is created when empty.
    poolName - the training pool: a name under the VQSeg home folder, or a folder path.
    budgetMinutes - time budget of one fine-tune.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    roi: vtkMRMLMarkupsROINode
    modelName: str = ""
    device: Annotated[str, Choice(list(home.DEVICE_CHOICES))] = "auto"
    showUncertainty: bool = False
    segmentation: vtkMRMLSegmentationNode
    poolName: str = "default"
    budgetMinutes: Annotated[int, WithinRange(1, 480)] = 10


#
# Outcomes of the logic's actions
#


class SegmentOutcome(NamedTuple):
    segmentationNode: object
    uncertaintyNode: object  # None unless an uncertainty map was asked for
    oodWarning: str  # "" when the image looks like the training data
    summary: str
    roiRotated: bool  # the ROI was rotated: its world bounding box was segmented
    result: dict  # the CLI's result event


class PoolOutcome(NamedTuple):
    caseId: str
    action: str  # "add" or "update"
    status: str  # "labelled" or "unlabelled"
    ignoredSegmentIds: List[str]  # segments outside the class table (not exported)
    result: dict


class ReopenedCase(NamedTuple):
    caseId: str
    volumeNode: object
    segmentationNode: object


#
# VQSegWidget
#


class VQSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: inputs, Segment, Correct, Add to pool, pool table, Fine-tune, models, settings."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._activeAction = None  # "segment", "finetune" or another action name while a run is going
        self._lastValidationDice = None
        self._modelsListed = False

    def resourcePath(self, filename):
        # Resources/ sits beside VQSeg.py in a built extension and one folder up in a checkout.
        return os.path.join(findSupportFolders(MODULE_FOLDER).resources, filename)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VQSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = VQSegLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self._setUpTable(self.ui.poolTable, result_text.POOL_COLUMNS)
        self._setUpTable(self.ui.modelVersionsTable, result_text.MODEL_COLUMNS)
        self.ui.homeFolderPathLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.ui.homeFolderPathLineEdit.currentPath = self.logic.chosenHomeFolder()
        self.ui.homeFolderDefaultLabel.text = _("Leave empty to use {folder}").format(folder=home.effectiveHomeFolder(""))
        self.ui.oodWarningLabel.hide()
        self.ui.progressBar.hide()
        self._fillModelSelector(None)

        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.correctButton.connect("clicked(bool)", self.onCorrectButton)
        self.ui.addToPoolButton.connect("clicked(bool)", lambda: self.onAddToPool(labelled=True))
        self.ui.addUnlabelledButton.connect("clicked(bool)", lambda: self.onAddToPool(labelled=False))
        self.ui.refreshPoolButton.connect("clicked(bool)", self.onRefreshPool)
        self.ui.poolTable.connect("cellDoubleClicked(int,int)", self.onPoolCaseDoubleClicked)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetuneButton)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshModels)
        self.ui.activateVersionButton.connect("clicked(bool)", self.onActivateVersion)
        self.ui.rollbackButton.connect("clicked(bool)", self.onRollback)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)
        self.ui.exportVersionButton.connect("clicked(bool)", self.onExportVersion)
        self.ui.importVersionButton.connect("clicked(bool)", self.onImportVersion)
        self.ui.roiSelector.connect("nodeAddedByUser(vtkMRMLNode*)", self.onRoiCreated)
        self.ui.openHomeFolderButton.connect("clicked(bool)", self.onOpenHomeFolder)
        self.ui.checkDeviceButton.connect("clicked(bool)", self.onCheckDevice)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelSelected)
        self.ui.homeFolderPathLineEdit.connect("currentPathChanged(QString)", self.onHomeFolderChanged)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self.logic:
            self.logic.shutdown()

    def onReload(self) -> None:
        """Reload VQSegLib as well: Slicer's Reload re-reads only this file, so edits to the library would be ignored."""
        for name in sorted((name for name in sys.modules if name == "VQSegLib" or name.startswith("VQSegLib.")), reverse=True):
            importlib.reload(sys.modules[name])  # submodules first, the package last
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self) -> None:
        self.initializeParameterNode()
        if not self._modelsListed and not self.logic.isBusy() and self.logic.dependenciesLookInstalled():
            self._modelsListed = True
            self._runQuietly("list models", lambda onCompleted: self.logic.listModels(onCompleted=onCompleted, waitForCompletion=False),
                             self._onModelsListed)

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGuiState)

    def onSceneStartClose(self, caller, event) -> None:
        if self._activeAction == "segment":  # its result belongs to nodes the close removes; a fine-tune writes no node and goes on
            self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = scene.firstImageVolume(slicer.mrmlScene)
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[VQSegParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGuiState)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGuiState)
            self._updateGuiState()

    # ---- state of the panel ---------------------------------------------------------------------

    def _updateGuiState(self, caller=None, event=None) -> None:
        node = self._parameterNode
        busy = self._activeAction is not None
        hasVolume = bool(node and node.inputVolume)
        segmentation = node.segmentation if node else None
        madeByVQSeg = bool(segmentation and segmentation_tags.classesOf(segmentation) is not None)
        hasDraft = bool(segmentation and segmentation_tags.draftOf(segmentation)[0])

        self.ui.segmentButton.text = _("Cancel") if self._activeAction == "segment" else _("Segment")
        self.ui.segmentButton.enabled = self._activeAction == "segment" or (not busy and hasVolume)
        self.ui.finetuneButton.text = _("Cancel") if self._activeAction == "finetune" else _("Fine-tune")
        self.ui.finetuneButton.enabled = self._activeAction == "finetune" or (not busy and bool(node and node.poolName))
        self.ui.correctButton.enabled = bool(segmentation)
        self.ui.show3DButton.setSegmentationNode(segmentation)  # the button is off without a node
        self.ui.addToPoolButton.enabled = not busy and madeByVQSeg
        self.ui.addUnlabelledButton.enabled = not busy and hasDraft
        for button in (self.ui.refreshPoolButton, self.ui.refreshModelsButton, self.ui.activateVersionButton, self.ui.rollbackButton,
                       self.ui.exportVersionButton, self.ui.importVersionButton):
            button.enabled = not busy
        self.ui.modelSelector.enabled = not busy
        self.ui.segmentButton.toolTip = _("Segment the input volume (in the ROI, if one is chosen)") if hasVolume else _("Select an input volume")
        if node is not None:
            self._selectModelInCombo(node.modelName)

    def _setBusy(self, action: Optional[str]) -> None:
        self._activeAction = action
        if action is None:
            self.ui.progressBar.hide()
        else:
            self.ui.progressBar.show()
            self.ui.progressBar.setRange(0, 0)  # busy indicator until the first progress event
            self._lastValidationDice = None
        self._updateGuiState()

    def _showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        if text:
            self._appendLog(text)

    def _appendLog(self, text: str) -> None:
        """One line in the panel's Log section (it keeps the last 2,000)."""
        self.ui.logTextEdit.appendPlainText(f"{datetime.datetime.now():%H:%M:%S}  {text}")

    def _onRunEvent(self, run, event) -> None:
        """Progress bar and status text from the CLI's events (main thread: called from the poll timer)."""
        kind = event.get("event")
        if kind == "metric" and event.get("stage") == "validate" and isinstance(event.get("mean_dice"), (int, float)):
            self._lastValidationDice = event["mean_dice"]
        elif kind == "log":
            level = event.get("level", "info")
            self._appendLog(event.get("message", "") if level == "info" else f"{level}: {event.get('message', '')}")
            if level in ("warning", "error"):
                logging.warning("VQSeg: %s", event.get("message"))
        if kind != "progress":
            return
        if self._activeAction == "finetune":
            budgetSeconds = self._parameterNode.budgetMinutes * 60.0 if self._parameterNode else None
            fraction = result_text.trainingFraction(event, budgetSeconds)
            text = result_text.trainingStatus(event, self._lastValidationDice)
        else:
            fraction = progressFraction(event)
            text = describeProgress(event)
        if fraction is None:
            self.ui.progressBar.setRange(0, 0)
        else:
            self.ui.progressBar.setRange(0, 1000)
            self.ui.progressBar.value = int(round(fraction * 1000))
        self._showStatus(text)

    def _start(self, action: str, launch: Callable) -> bool:
        """Run `launch()` (which starts a CLI run) with the panel marked busy; errors go to a dialog."""
        self._setBusy(action)
        try:
            with slicer.util.tryWithErrorDisplay(_("VQSeg could not start."), waitCursor=True):
                launch()
        except Exception as problem:  # already shown to the user
            self._setBusy(None)
            self._showStatus(str(problem).splitlines()[0] if str(problem) else _("Failed."))
            return False
        return True

    def _finish(self, run, doneMessage: str) -> bool:
        """End of a run: status text, error dialog; True when the run succeeded."""
        self._setBusy(None)
        if run.state == DONE:
            self._showStatus(doneMessage)
            return True
        if run.state == CANCELLED:
            self._showStatus(_("Cancelled."))
            return False
        message = run.errorMessage or _("VQSeg failed.")
        self._showStatus(_("Failed: {message}").format(message=message.splitlines()[0]))
        slicer.util.errorDisplay(message + ("\n\n" + run.errorHint if run.errorHint else ""),
                                 detailedText="\n".join(run.logLines[-200:]), windowTitle=_("VQSeg"))
        return False

    def _runQuietly(self, action: str, launch: Callable, onCompleted: Callable) -> None:
        """A short background command whose failure only shows in the status line (model list on entering)."""
        def completed(run, outcome):
            self._setBusy(None)
            if run.state == DONE:
                onCompleted(run, outcome)
            else:
                firstLine = run.errorMessage.splitlines()[0] if run.errorMessage else ""
                self._showStatus(_("Could not {action}: {message}").format(action=action, message=firstLine))
        self._setBusy(action)
        try:
            launch(completed)
        except Exception as problem:
            self._setBusy(None)
            self._showStatus(str(problem))

    def _ensureDependencies(self) -> bool:
        """Install VQSeg's Python packages on first use, after one confirmation; False if they are missing.

        The panel is busy meanwhile: pip keeps Slicer's event loop running, so without that a second
        click could start a second install or a run on half-installed packages."""
        if self._activeAction is not None:
            return False
        if self.logic.dependenciesLookInstalled():
            return True
        self._setBusy("install")
        self._showStatus(_("Checking and installing VQSeg's Python packages..."))
        try:
            with slicer.util.tryWithErrorDisplay(_("VQSeg's Python packages could not be installed."), waitCursor=False):
                try:
                    installed = self.logic.ensureDependencies()
                except dependencies.InstallDeclined as declined:  # the user's choice, not an error
                    self._showStatus(str(declined))
                    return False
        except Exception:  # shown by tryWithErrorDisplay
            return False
        finally:
            self._setBusy(None)
        self._showStatus("")
        if installed:
            slicer.util.infoDisplay(_("Installed: {packages}.\nIf VQSeg reports a missing or outdated package, restart Slicer.").format(
                packages=", ".join(installed)), windowTitle=_("VQSeg"))
        return True

    def _cancelledOrBlocked(self, action: str) -> bool:
        """A click on a running action's button cancels it; otherwise the dependencies must be there."""
        if self._activeAction == action:
            self.logic.cancel()
            self._showStatus(_("Cancelling..."))
            return True
        return not self._ensureDependencies()

    # ---- Segment --------------------------------------------------------------------------------

    def onSegmentButton(self) -> None:
        if self._cancelledOrBlocked("segment"):
            return
        node = self._parameterNode
        self.ui.oodWarningLabel.hide()
        self.ui.segmentResultLabel.text = ""
        self._start("segment", lambda: self.logic.segment(
            node.inputVolume, roiNode=node.roi, model=node.modelName, device=node.device, withUncertainty=node.showUncertainty,
            segmentationNode=node.segmentation, onEvent=self._onRunEvent, onCompleted=self._onSegmentCompleted,
            waitForCompletion=False))

    def _onSegmentCompleted(self, run, outcome: Optional[SegmentOutcome]) -> None:
        if not self._finish(run, _("Segmentation done.")) or outcome is None:
            return
        if self._parameterNode is None:  # the scene was closed while the run went on
            return
        self._parameterNode.segmentation = outcome.segmentationNode
        summary = outcome.summary
        if outcome.roiRotated:
            summary += " " + _("The ROI is rotated: its axis-aligned bounding box was segmented.")
        self.ui.segmentResultLabel.text = summary
        if outcome.oodWarning:
            self.ui.oodWarningLabel.text = _("Warning: {warning}").format(warning=outcome.oodWarning)
            self.ui.oodWarningLabel.show()
        self._updateGuiState()

    # ---- Correct --------------------------------------------------------------------------------

    def onCorrectButton(self) -> None:
        segmentation = self._parameterNode.segmentation
        # The segmentation's own volume first: the input selector may point at another volume by now.
        volume = scene.referenceVolumeOf(segmentation) or self._parameterNode.inputVolume
        with slicer.util.tryWithErrorDisplay(_("Could not open the Segment Editor."), waitCursor=True):
            self.logic.openInSegmentEditor(segmentation, volume)

    # ---- Pool -----------------------------------------------------------------------------------

    def onAddToPool(self, labelled: bool) -> None:
        node = self._parameterNode
        self._start("add to pool", lambda: self.logic.addToPool(
            node.segmentation, node.poolName, labelled=labelled, onEvent=self._onRunEvent, onCompleted=self._onAddedToPool,
            waitForCompletion=False))

    def _onAddedToPool(self, run, outcome: Optional[PoolOutcome]) -> None:
        if not self._finish(run, _("Saved to the pool.")) or outcome is None:
            return
        verb = _("updated") if outcome.action == "update" else _("added")
        text = _("Case {case} {verb} ({status}).").format(case=outcome.caseId, verb=verb, status=outcome.status)
        if outcome.ignoredSegmentIds:
            text += " " + _("Not exported (not a model class): {segments}.").format(segments=", ".join(outcome.ignoredSegmentIds))
        self._showStatus(text)
        self._updateGuiState()
        self.onRefreshPool()

    def onRefreshPool(self) -> None:
        node = self._parameterNode
        self._runQuietly("list the pool", lambda onCompleted: self.logic.listPool(
            node.poolName, onCompleted=onCompleted, waitForCompletion=False), self._onPoolListed)

    def _onPoolListed(self, run, listResult) -> None:
        self._fillTable(self.ui.poolTable, result_text.poolRows(listResult))
        self.ui.poolSummaryLabel.text = result_text.poolSummary(listResult)
        self._showStatus(_("Pool listed."))

    def onPoolCaseDoubleClicked(self, row: int, column: int) -> None:
        item = self.ui.poolTable.item(row, 0)
        if item is None or self._activeAction is not None:
            return
        caseId = item.text()
        node = self._parameterNode
        self._start("reopen case", lambda: self.logic.reopenCase(
            node.poolName, caseId, onCompleted=self._onCaseReopened, waitForCompletion=False))

    def _onCaseReopened(self, run, reopened: Optional[ReopenedCase]) -> None:
        if not self._finish(run, _("Case loaded: correct it, then press 'Add to pool' to update it.")) or reopened is None:
            return
        if self._parameterNode is None:  # the scene was closed while the run went on
            return
        self._parameterNode.inputVolume = reopened.volumeNode
        self._parameterNode.segmentation = reopened.segmentationNode

    # ---- Fine-tune and models -------------------------------------------------------------------

    def onFinetuneButton(self) -> None:
        if self._cancelledOrBlocked("finetune"):
            return
        node = self._parameterNode
        self.ui.finetuneVerdictLabel.text = ""
        self._start("finetune", lambda: self.logic.finetune(
            node.poolName, modelName=cli_arguments.modelName(node.modelName), minutes=node.budgetMinutes, device=node.device,
            onEvent=self._onRunEvent, onCompleted=self._onFinetuneCompleted, waitForCompletion=False))

    def _onFinetuneCompleted(self, run, finetuneResult) -> None:
        if not self._finish(run, _("Fine-tune done.")) or not finetuneResult:
            return
        self.ui.finetuneVerdictLabel.text = result_text.finetuneVerdict(finetuneResult)
        useNew = askUseNewModel(result_text.finetuneQuestion(finetuneResult))
        chosenModel = self._parameterNode.modelName if self._parameterNode else ""  # None after a scene close
        modelName = finetuneResult.get("model") or cli_arguments.modelName(chosenModel)
        if useNew is None or useNew == bool(finetuneResult.get("promoted")):
            self.onRefreshModels()  # the gate's decision stands
        elif useNew:
            self._changeActiveVersion(lambda onCompleted: self.logic.activateVersion(
                modelName, finetuneResult.get("version"), onCompleted=onCompleted, waitForCompletion=False))
        else:
            self._changeActiveVersion(lambda onCompleted: self.logic.rollback(modelName, onCompleted=onCompleted, waitForCompletion=False))

    def _changeActiveVersion(self, launch: Callable) -> None:
        def completed(run, activation):
            if self._finish(run, _("Active model: {version}.").format(version=(activation or {}).get("active", "?"))):
                self.onRefreshModels()
        self._start("change model", lambda: launch(completed))

    def onRefreshModels(self) -> None:
        self._runQuietly("list models", lambda onCompleted: self.logic.listModels(onCompleted=onCompleted, waitForCompletion=False),
                         self._onModelsListed)

    def _onModelsListed(self, run, listResult) -> None:
        self._lastModelsList = listResult
        self._fillModelSelector(listResult)
        name = cli_arguments.modelName(self._parameterNode.modelName if self._parameterNode else "")
        self._fillTable(self.ui.modelVersionsTable, result_text.modelRows(listResult, name))
        self.ui.modelVersionsLabel.text = _("Versions of {model}:").format(model=name)
        self._showStatus(_("Models listed."))

    def _selectedVersion(self) -> Optional[str]:
        """The version selected in the models table; None (after telling the user) when there is none."""
        row = self.ui.modelVersionsTable.currentRow()
        item = self.ui.modelVersionsTable.item(row, 0) if row >= 0 else None
        if item is None:
            slicer.util.warningDisplay(_("Select a version in the table first (Refresh lists them)."), windowTitle=_("VQSeg"))
            return None
        return item.text()

    def onActivateVersion(self) -> None:
        version = self._selectedVersion()
        if version is None:
            return
        name = cli_arguments.modelName(self._parameterNode.modelName)
        self._changeActiveVersion(lambda onCompleted: self.logic.activateVersion(
            name, version, onCompleted=onCompleted, waitForCompletion=False))

    def onExportVersion(self) -> None:
        version = self._selectedVersion()
        if version is None:
            return
        name = cli_arguments.modelName(self._parameterNode.modelName)
        suggested = os.path.join(os.path.expanduser("~"), f"{name}-{version}.vqseg.tar")
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Export model version"), suggested,
                                              _("VQSeg model archive (*.vqseg.tar *.tar)"))
        if not path:
            return
        def completed(run, exported):
            self._finish(run, _("Exported {model} to {path}.").format(model=f"{name}@{version}", path=(exported or {}).get("archive", path)))
        self._start("export model", lambda: self.logic.exportVersion(name, version, path, onCompleted=completed, waitForCompletion=False))

    def onImportVersion(self) -> None:
        name = cli_arguments.modelName(self._parameterNode.modelName)
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("Import a model version into {model}").format(model=name),
                                              os.path.expanduser("~"), _("VQSeg model archive (*.vqseg.tar *.tar)"))
        if not path:
            return
        def completed(run, imported):
            if self._finish(run, _("Imported as {model}@{version} (a candidate: select it and Activate to use it).").format(
                    model=name, version=(imported or {}).get("version", "?"))):
                self.onRefreshModels()
        self._start("import model", lambda: self.logic.importVersion(path, name, onCompleted=completed, waitForCompletion=False))

    def onRoiCreated(self, roiNode) -> None:
        """A new ROI from the Region selector: a box at the centre of the CT, to drag onto the lesion."""
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        center = roi.volumeCenterRas(volume) if volume is not None else (0.0, 0.0, 0.0)
        roiNode.SetCenter(*center)
        roiNode.SetSize(*roi.NEW_ROI_SIZE_MM)
        self._showStatus(_("Drag the ROI's handles onto the lesion, then press Segment."))

    def onOpenReport(self) -> None:
        row = self.ui.modelVersionsTable.currentRow()
        item = self.ui.modelVersionsTable.item(row, 0) if row >= 0 else None
        name = cli_arguments.modelName(self._parameterNode.modelName if self._parameterNode else "")
        target = result_text.versionReport(getattr(self, "_lastModelsList", None), name, item.text()) if item else None
        if target is None:
            slicer.util.warningDisplay(_("Select a version in the table first (Refresh lists them)."), windowTitle=_("VQSeg"))
            return
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(target))

    def onCheckDevice(self) -> None:
        if self._activeAction is not None:
            return
        torchState, torchMessage = dependencies.torchStatus()
        if torchState != "ok":  # `vqseg info` needs torch: say what to do instead
            self._showDeviceAdvice(torchMessage)
            return
        self._runQuietly("check the compute device", lambda onCompleted: self.logic.deviceInfo(onCompleted=onCompleted, waitForCompletion=False),
                         lambda run, info: self._showDeviceAdvice(result_text.deviceAdvice(info)))

    def _showDeviceAdvice(self, text: str) -> None:
        self.ui.deviceAdviceLabel.text = text
        self._showStatus(text)

    def onOpenHomeFolder(self) -> None:
        folder = self.logic.homeFolder()
        os.makedirs(folder, exist_ok=True)
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(folder))

    def onRollback(self) -> None:
        name = cli_arguments.modelName(self._parameterNode.modelName)
        self._changeActiveVersion(lambda onCompleted: self.logic.rollback(name, onCompleted=onCompleted, waitForCompletion=False))

    def onModelSelected(self, index: int) -> None:
        if self._parameterNode is None or index < 0:
            return
        spec = self.ui.modelSelector.itemData(index) or ""
        if spec != self._parameterNode.modelName:
            self._parameterNode.modelName = spec

    def _fillModelSelector(self, listResult) -> None:
        selector = self.ui.modelSelector
        wasBlocked = selector.blockSignals(True)
        selector.clear()
        selector.addItem(_("Default ({name}, active version)").format(name=cli_arguments.DEFAULT_MODEL_NAME), "")
        for label, spec in result_text.modelChoices(listResult):
            selector.addItem(label, spec)
        selector.blockSignals(wasBlocked)
        self._selectModelInCombo(self._parameterNode.modelName if self._parameterNode else "")

    def _selectModelInCombo(self, spec: str) -> None:
        selector = self.ui.modelSelector
        index = selector.findData(spec or "")
        if index < 0:  # chosen in an earlier session and not listed (yet): keep it visible
            selector.addItem(spec, spec)
            index = selector.count - 1
        if selector.currentIndex != index:
            wasBlocked = selector.blockSignals(True)
            selector.currentIndex = index
            selector.blockSignals(wasBlocked)

    # ---- Settings -------------------------------------------------------------------------------

    def onHomeFolderChanged(self, path: str) -> None:
        # Called as the user types: only remember it; the lists of the old folder are cleared, not re-read.
        self.logic.setChosenHomeFolder(path)
        self._fillTable(self.ui.poolTable, [])
        self._fillTable(self.ui.modelVersionsTable, [])
        self.ui.poolSummaryLabel.text = ""
        self._showStatus(_("Pools and models are read from {folder} (press Refresh).").format(folder=self.logic.homeFolder()))

    # ---- tables ---------------------------------------------------------------------------------

    @staticmethod
    def _setUpTable(table, columns) -> None:
        table.setColumnCount(len(columns))
        table.setHorizontalHeaderLabels(list(columns))
        table.horizontalHeader().setStretchLastSection(True)

    @staticmethod
    def _fillTable(table, rows) -> None:
        table.setRowCount(len(rows))
        for rowIndex, row in enumerate(rows):
            for columnIndex, text in enumerate(row):
                table.setItem(rowIndex, columnIndex, qt.QTableWidgetItem(text))
        table.resizeColumnsToContents()


def askUseNewModel(question: str) -> Optional[bool]:
    """'Use new model' (True) or 'Keep current' (False); None in testing mode, where the gate's decision stands."""
    if slicer.app.testingEnabled():
        return None
    box = qt.QMessageBox(slicer.util.mainWindow())
    box.setWindowTitle(_("VQSeg fine-tune"))
    box.setText(question)
    useButton = box.addButton(_("Use new model"), qt.QMessageBox.AcceptRole)
    box.addButton(_("Keep current"), qt.QMessageBox.RejectRole)
    box.exec_()
    useNew = box.clickedButton() == useButton  # PythonQt returns the same wrapper for the same QPushButton
    box.deleteLater()  # parented to the main window: delete it, as slicer.util.messageBox does
    return useNew


#
# VQSegLogic
#


class VQSegLogic(ScriptedLoadableModuleLogic):
    """Everything the buttons do, usable from scripts and tests without the widget.

    Each action starts one CLI run. With waitForCompletion=True (the default, for scripts and tests) it
    blocks, returns the outcome and raises VQSegRunError if the run failed or was cancelled. With
    waitForCompletion=False it returns the CliRun at once; a qt.QTimer polls it on the main thread and
    onCompleted(run, outcome) is called when it ends (outcome None unless run.state is DONE).
    """

    def __init__(self, runner: Optional[CliRunner] = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.supportFolders = findSupportFolders(MODULE_FOLDER)
        self.runs = RunController(runner or CliRunner(pythonExecutable, self.supportFolders.coreSearchPath))
        self._dependenciesReady = False

    @property
    def runner(self) -> CliRunner:
        return self.runs.runner

    def getParameterNode(self):
        return VQSegParameterNode(super().getParameterNode())

    # ---- settings and dependencies --------------------------------------------------------------

    def chosenHomeFolder(self) -> str:
        return home.savedHomeFolder(qt.QSettings())

    def setChosenHomeFolder(self, folder: str) -> None:
        home.saveHomeFolder(qt.QSettings(), folder)

    def homeFolder(self) -> str:
        return home.effectiveHomeFolder(self.chosenHomeFolder())

    def dependenciesLookInstalled(self) -> bool:
        """Cheap check from package metadata (nothing imported)."""
        return dependencies.torchStatus()[0] == "ok" and not dependencies.missingPackages(dependencies.CORE_REQUIREMENTS)

    def ensureDependencies(self, confirm: Optional[Callable[[str], bool]] = None) -> List[str]:
        """Install missing packages after one confirmation (first Segment or Fine-tune); returns what was installed."""
        if self._dependenciesReady:
            return []
        installed = [] if self.dependenciesLookInstalled() else dependencies.installMissing(confirm=confirm)
        self._dependenciesReady = True
        return installed

    # ---- running the CLI ------------------------------------------------------------------------

    def isBusy(self) -> bool:
        return self.runs.isBusy()

    def cancel(self) -> None:
        self.runs.cancel()

    def shutdown(self) -> None:
        self.runs.shutdown()

    def runCommand(self, arguments: List[str], device: str = "auto", importResult: Optional[Callable] = None,
                   onEvent: Optional[Callable] = None, onCompleted: Optional[Callable] = None, waitForCompletion: bool = True,
                   workDir: Optional[str] = None):
        """`python -m VQSegCore <arguments>` with VQSEG_HOME and the device choice in its environment."""
        return self.runs.run(arguments, home.childEnvironment(self.chosenHomeFolder(), device), importResult=importResult,
                             onEvent=onEvent, onCompleted=onCompleted, waitForCompletion=waitForCompletion, workDir=workDir)

    # ---- Segment --------------------------------------------------------------------------------

    def segment(self, inputVolume, roiNode=None, model: str = "", device: str = "auto", withUncertainty: bool = False,
                segmentationNode=None, onEvent=None, onCompleted=None, waitForCompletion: bool = True):
        """Segment `inputVolume` (inside `roiNode` if given) into `segmentationNode` (new if None)."""
        if inputVolume is None or inputVolume.GetImageData() is None:
            raise ValueError(_("Select an input volume that holds an image."))
        box = None
        if roiNode is not None:
            if inputVolume.GetParentTransformNode() is not None:
                raise ValueError(_("The input volume is transformed: harden its transform, or clear the ROI."))
            box = roi.roiBox(roiNode)
        workDir = self.runner.createWorkDir()
        try:
            inputPath = os.path.join(workDir, "input.nrrd")
            segio.writeVolumeToFile(inputVolume, inputPath)
        except Exception:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        labelPath = os.path.join(workDir, "label.nii.gz")
        uncertaintyPath = os.path.join(workDir, "uncertainty.nii.gz") if withUncertainty else None
        arguments = cli_arguments.segmentArguments(inputPath, labelPath, model=model or None,
                                                   roiRasCorners=box.corners if box else None, uncertaintyPath=uncertaintyPath, device=device)
        return self.runCommand(
            arguments, device=device, onEvent=onEvent, onCompleted=onCompleted, waitForCompletion=waitForCompletion, workDir=workDir,
            importResult=lambda run: self._importSegmentation(run.result, inputVolume, segmentationNode, bool(box and box.rotated)))

    def _importSegmentation(self, result: dict, inputVolume, segmentationNode, roiRotated: bool) -> SegmentOutcome:
        if not scene.isInScene(inputVolume):
            raise ValueError(_("The input volume was removed from the scene while it was being segmented. Load it again and segment it."))
        if not scene.isInScene(segmentationNode):
            segmentationNode = None  # removed while the run went on: the result goes into a new segmentation
        modelFolder = result["model"]
        classes = model_card.modelClassTable(modelFolder)
        previousVolume = scene.referenceVolumeOf(segmentationNode)
        segmentationNode = segio.importLabelmapAsSegmentation(
            slicer.mrmlScene, result["output"], classes, inputVolume,
            name=_("{volume} tumour").format(volume=inputVolume.GetName()), segmentationNode=segmentationNode)
        previousDraft, _model = segmentation_tags.draftOf(segmentationNode)
        drafts.discardDraft(previousDraft, self.homeFolder())
        segmentation_tags.recordClasses(segmentationNode, classes)
        segmentation_tags.recordDraft(segmentationNode, drafts.keepDraft(result["output"], self.homeFolder()),
                                      model_card.modelVersionLabel(modelFolder))
        if previousVolume is None or previousVolume.GetID() != inputVolume.GetID():
            segmentation_tags.forgetPoolCase(segmentationNode)  # another image: a new case
        scene.removeUncertaintyOverlay(slicer.mrmlScene, segmentationNode)  # the last run's map no longer matches this result
        uncertaintyNode = None
        if result.get("uncertainty"):
            uncertaintyNode = self._showUncertainty(result["uncertainty"], inputVolume, segmentationNode)
        classNames = {c["id"]: c["name"] for c in classes}
        return SegmentOutcome(segmentationNode, uncertaintyNode, result_text.oodWarning(result),
                              result_text.segmentSummary(result, classNames), roiRotated, result)

    def _showUncertainty(self, path: str, inputVolume, segmentationNode):
        """Load the uncertainty map as a heat overlay over the input."""
        node = segio.loadVolumeFromFile(slicer.mrmlScene, path, name=_("{volume} uncertainty").format(volume=inputVolume.GetName()))
        node.SetAndObserveTransformNodeID(inputVolume.GetTransformNodeID())
        segmentation_tags.recordUncertaintyNodeId(segmentationNode, node.GetID())
        scene.showAsHeatOverlay(node, inputVolume, valueRange=(0.0, 1.0))  # the map is in [0, 1]
        return node

    # ---- Correct --------------------------------------------------------------------------------

    def openInSegmentEditor(self, segmentationNode, volumeNode=None) -> None:
        """Switch to the Segment Editor with this segmentation, its volume and the first class's segment selected."""
        if segmentationNode is None:
            raise ValueError(_("There is no segmentation to correct: segment first."))
        classes = segmentation_tags.classesOf(segmentationNode) or []
        segmentIds = segio.findClassSegmentIds(segmentationNode, classes) if classes else {}
        firstSegment = next((segmentIds[c["id"]] for c in classes if segmentIds[c["id"]]), None)
        scene.openInSegmentEditor(segmentationNode, volumeNode or scene.referenceVolumeOf(segmentationNode), firstSegment)

    # ---- Pool -----------------------------------------------------------------------------------

    def addToPool(self, segmentationNode, pool: str, labelled: bool = True, onEvent=None, onCompleted=None,
                  waitForCompletion: bool = True):
        """Add the case to the pool: corrected (labelled) or as unlabelled data; a case already in this pool gets its label updated."""
        if segmentationNode is None:
            raise ValueError(_("There is no segmentation to add: segment first."))
        classes = segmentation_tags.classesOf(segmentationNode)
        volumeNode = scene.referenceVolumeOf(segmentationNode)
        if classes is None or volumeNode is None:
            raise ValueError(_("This segmentation was not made by VQSeg (no class table or reference volume): segment the volume first."))
        recordedPool, caseId = segmentation_tags.poolCaseOf(segmentationNode)
        updating = bool(caseId) and recordedPool == pool
        draftPath, draftModel = segmentation_tags.draftOf(segmentationNode)
        if draftPath and not os.path.isfile(draftPath):
            logging.warning("VQSeg: the draft %s is gone; the case is added without it", draftPath)
            draftPath = ""
        if not labelled and updating:
            raise ValueError(_("This case is already in the pool ({case}).").format(case=caseId))
        if not labelled and not draftPath:
            raise ValueError(_("'Add as unlabelled' needs the model's segmentation of this volume: segment it first."))

        workDir = self.runner.createWorkDir()
        ignored = []
        try:
            labelPath = os.path.join(workDir, "label.nii.gz") if labelled else None
            if labelled:
                exported = segio.exportSegmentationToLabelmapFile(segmentationNode, volumeNode, classes, labelPath)
                ignored = list(exported.get("ignoredSegmentIds", []))
            if updating:
                arguments = cli_arguments.poolUpdateArguments(pool, caseId, labelPath)
            else:
                imagePath = os.path.join(workDir, "image.nrrd")
                segio.writeVolumeToFile(volumeNode, imagePath)
                classesPath = os.path.join(workDir, "classes.json")
                with open(classesPath, "w", encoding="utf-8") as stream:
                    stream.write(model_card.classTableJson(classes))
                arguments = cli_arguments.poolAddArguments(pool, imagePath, labelPath=labelPath, draftPath=draftPath or None,
                                                           sourceName=volumeNode.GetName(), draftModel=draftModel or None,
                                                           classesPath=classesPath)
        except Exception:
            shutil.rmtree(workDir, ignore_errors=True)
            raise

        def importResult(run) -> PoolOutcome:
            case = run.result.get("case") or {}
            segmentation_tags.recordPoolCase(segmentationNode, pool, str(case.get("id", "")))
            if draftPath:  # the pool holds its own copy now
                drafts.discardDraft(draftPath, self.homeFolder())
                segmentation_tags.forgetDraft(segmentationNode)
            return PoolOutcome(str(case.get("id", "")), str(run.result.get("action", "")), str(case.get("status", "")), ignored, run.result)

        return self.runCommand(arguments, importResult=importResult, onEvent=onEvent, onCompleted=onCompleted,
                               waitForCompletion=waitForCompletion, workDir=workDir)

    def listPool(self, pool: str, onCompleted=None, waitForCompletion: bool = True):
        """`pool list`'s result; an empty listing (no process) when the pool does not exist yet."""
        if not home.isPool(home.poolFolder(self.homeFolder(), pool)):
            emptyListing = {"event": "result", "count": 0, "labelled": 0, "unlabelled": 0, "cases": [], "unreadable": []}
            return self.runs.finishWithoutRun(emptyListing, onCompleted=onCompleted, waitForCompletion=waitForCompletion)
        return self.runCommand(cli_arguments.poolListArguments(pool), onCompleted=onCompleted, waitForCompletion=waitForCompletion)

    def reopenCase(self, pool: str, caseId: str, onCompleted=None, waitForCompletion: bool = True):
        """Load a pool case (image, and its label or else its draft) for further correction."""
        def importResult(run) -> ReopenedCase:
            case = run.result.get("case") or {}
            files = case.get("files") or {}
            classes = model_card.poolClassTable(run.result["pool"])
            volumeNode = segio.loadVolumeFromFile(slicer.mrmlScene, files["image.nii.gz"], name=caseId)
            labelPath = files.get("label.nii.gz") or files.get("draft.nii.gz")
            name = _("{case} tumour").format(case=caseId)
            if labelPath:
                segmentationNode = segio.importLabelmapAsSegmentation(slicer.mrmlScene, labelPath, classes, volumeNode, name=name)
            else:
                segmentationNode = scene.emptySegmentation(slicer.mrmlScene, classes, volumeNode, name)
            segmentation_tags.recordClasses(segmentationNode, classes)
            segmentation_tags.recordPoolCase(segmentationNode, pool, caseId)
            # foreground=None: an uncertainty overlay of another image must not stay on top of this case.
            slicer.util.setSliceViewerLayers(background=volumeNode, foreground=None, fit=True)
            return ReopenedCase(caseId, volumeNode, segmentationNode)

        return self.runCommand(cli_arguments.poolShowArguments(pool, caseId), importResult=importResult, onCompleted=onCompleted,
                               waitForCompletion=waitForCompletion)

    # ---- Fine-tune and models -------------------------------------------------------------------

    def finetune(self, pool: str, modelName: Optional[str] = None, minutes: Optional[float] = None, iterations: Optional[int] = None,
                 device: str = "auto", onEvent=None, onCompleted=None, waitForCompletion: bool = True, fromScratch: bool = False):
        """Fine-tune the model's active version on the pool; the result says whether the gate promoted the new version."""
        arguments = cli_arguments.finetuneArguments(pool, modelName=modelName, minutes=minutes, iterations=iterations, device=device,
                                                    fromScratch=fromScratch)
        return self.runCommand(arguments, device=device, onEvent=onEvent, onCompleted=onCompleted, waitForCompletion=waitForCompletion)

    def deviceInfo(self, onCompleted=None, waitForCompletion: bool = True):
        """`vqseg info`: versions, the compute device and its memory, threads, the home folder."""
        return self.runCommand(cli_arguments.infoArguments(), onCompleted=onCompleted, waitForCompletion=waitForCompletion)

    def listModels(self, onCompleted=None, waitForCompletion: bool = True):
        return self.runCommand(cli_arguments.modelsListArguments(), onCompleted=onCompleted, waitForCompletion=waitForCompletion)

    def activateVersion(self, modelName: str, version: str, onCompleted=None, waitForCompletion: bool = True):
        return self.runCommand(cli_arguments.modelsActivateArguments(modelName, version), onCompleted=onCompleted,
                               waitForCompletion=waitForCompletion)

    def rollback(self, modelName: str, onCompleted=None, waitForCompletion: bool = True):
        return self.runCommand(cli_arguments.modelsRollbackArguments(modelName), onCompleted=onCompleted,
                               waitForCompletion=waitForCompletion)

    def exportVersion(self, modelName: str, version: str, archivePath: str, onCompleted=None, waitForCompletion: bool = True):
        """`vqseg models export`: one tar with the version's card and weights."""
        return self.runCommand(cli_arguments.modelsExportArguments(modelName, version, archivePath), onCompleted=onCompleted,
                               waitForCompletion=waitForCompletion)

    def importVersion(self, archivePath: str, modelName: str, onCompleted=None, waitForCompletion: bool = True):
        """`vqseg models import`: the archive becomes a new candidate version of `modelName` (never active by itself)."""
        return self.runCommand(cli_arguments.modelsImportArguments(archivePath, modelName), onCompleted=onCompleted,
                               waitForCompletion=waitForCompletion)


#
# VQSegTest
#


class VQSegTest(ScriptedLoadableModuleTest):
    """The ROI box, then the whole loop on a synthetic chest CT, offline: segment, edit, add to a
    temporary pool, reopen, fine-tune.

    Under CTest (`slicer.app.testingEnabled()`; it runs each test_ method) nothing is ever installed:
    the loop runs only when the packages are already there and is skipped otherwise, so a build
    machine never downloads torch. Run by hand (Reload and Test), the loop first offers to install what is missing.
    Everything runs through the real CLI with waitForCompletion=True, in a temporary VQSeg home, so the
    user's pools and models are never touched. Without a model to start from (no shipped default), the
    test first trains a tiny one from the phantom's true label (2 iterations). CPU only.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RoiBox()
        self.setUp()
        self.test_SegmentCorrectCollectFinetune()

    def test_RoiBox(self):
        """An axis-aligned ROI is segmented exactly; a rotated one as its (larger) world bounding box."""
        roiNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        roiNode.SetCenter(10.0, -20.0, 30.0)
        roiNode.SetSize(40.0, 50.0, 60.0)
        box = roi.roiBox(roiNode)
        self.assertFalse(box.rotated)
        for got, expected in zip(box.corners, [-10.0, -45.0, 0.0, 30.0, 5.0, 60.0]):
            self.assertAlmostEqual(got, expected, places=4)
        turned = vtk.vtkTransform()
        turned.SetMatrix(roiNode.GetObjectToNodeMatrix())
        turned.RotateZ(30.0)
        roiNode.SetAndObserveObjectToNodeMatrix(turned.GetMatrix())
        rotatedBox = roi.roiBox(roiNode)
        self.assertTrue(rotatedBox.rotated)
        self.assertGreater(rotatedBox.corners[3] - rotatedBox.corners[0], 40.0)

    def test_SegmentCorrectCollectFinetune(self):
        import tempfile

        import numpy as np

        logic = VQSegLogic()
        if slicer.app.testingEnabled():
            if not logic.dependenciesLookInstalled():
                self.skipTest("VQSeg's packages are not installed, and tests never install them")
        else:  # run by hand: offer to install what is missing
            logic.ensureDependencies()
        homeFolder = tempfile.mkdtemp(prefix="VQSegTest-")
        savedHome = logic.chosenHomeFolder()
        logic.setChosenHomeFolder(homeFolder)
        try:
            pool = os.path.join(homeFolder, "test-pool")
            volumeNode, truth = self._syntheticCt(logic)
            self.delayDisplay("Synthetic CT loaded")
            if not result_text.activeVersion(logic.listModels(), cli_arguments.DEFAULT_MODEL_NAME):
                self._trainTinyModel(logic, volumeNode, truth, pool)
                self.delayDisplay("Tiny model trained")

            outcome = logic.segment(volumeNode, device="cpu", withUncertainty=True)
            segmentationNode = outcome.segmentationNode
            self.assertTrue(segio.segmentationGeometryMatches(segmentationNode, volumeNode))
            self.assertTrue(segio.volumeGeometryMatches(outcome.uncertaintyNode, volumeNode))
            classes = segmentation_tags.classesOf(segmentationNode)
            tumourId = segio.findClassSegmentIds(segmentationNode, classes)[classes[0]["id"]]
            self.assertIsNotNone(tumourId)
            draftPath, draftModel = segmentation_tags.draftOf(segmentationNode)
            self.assertTrue(os.path.isfile(draftPath))
            self.assertIn("@", draftModel)
            self.delayDisplay("Segmented: " + outcome.summary)

            # The clinician's correction: paint a 3x5x5 block into the tumour segment.
            tumour = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, tumourId, volumeNode)
            self.assertEqual(tumour.shape, slicer.util.arrayFromVolume(volumeNode).shape)
            tumour[10:13, 40:45, 40:45] = 1
            slicer.util.updateSegmentBinaryLabelmapFromArray(tumour, segmentationNode, tumourId, volumeNode)
            corrected = int(np.count_nonzero(slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, tumourId, volumeNode)))
            self.assertEqual(corrected, int(np.count_nonzero(tumour)))

            added = logic.addToPool(segmentationNode, pool)
            self.assertEqual((added.action, added.status), ("add", "labelled"))
            self.assertFalse(os.path.exists(draftPath))  # the pool keeps its own copy
            updated = logic.addToPool(segmentationNode, pool)  # adding again updates the same case
            self.assertEqual((updated.action, updated.caseId), ("update", added.caseId))
            casesById = {case["id"]: case for case in logic.listPool(pool)["cases"]}
            self.assertEqual(casesById[added.caseId]["status"], "labelled")

            reopened = logic.reopenCase(pool, added.caseId)
            self.assertTrue(segio.volumeGeometryMatches(reopened.volumeNode, volumeNode, tolerance=1e-4))
            reopenedTumour = slicer.util.arrayFromSegmentBinaryLabelmap(reopened.segmentationNode, tumourId, reopened.volumeNode)
            self.assertEqual(int(np.count_nonzero(reopenedTumour)), corrected)
            self.delayDisplay("Pool: added, updated, reopened")

            finetuned = logic.finetune(pool, iterations=2, device="cpu")
            self.assertTrue(finetuned["version"].startswith("v"))
            self.assertIn("promoted", finetuned)
            self.delayDisplay("Fine-tuned: " + result_text.finetuneVerdict(finetuned))
        finally:
            logic.setChosenHomeFolder(savedHome)
            shutil.rmtree(homeFolder, ignore_errors=True)

    def _syntheticCt(self, logic):
        """A 96x96x24 chest phantom (3x3x5 mm) from VQSegCore.synth, added with addVolumeFromArray (no download);
        returns the volume node and the true tumour label as a [k, j, i] array."""
        import numpy as np

        ensureCoreImportable(logic.supportFolders.coreSearchPath)
        import SimpleITK as sitk
        from VQSegCore.synth import PhantomSpec, make_chest_ct

        phantom = make_chest_ct(PhantomSpec(size_xy=(96, 96), n_slices=24, spacing=(3.0, 3.0, 5.0), tumour_diameter_mm=30.0, seed=1))
        lpsToRas = np.diag([-1.0, -1.0, 1.0])
        direction = np.array(phantom.image.GetDirection()).reshape(3, 3)
        ijkToRas = np.eye(4)
        ijkToRas[:3, :3] = lpsToRas @ direction @ np.diag(phantom.image.GetSpacing())
        ijkToRas[:3, 3] = lpsToRas @ np.array(phantom.image.GetOrigin())
        volumeNode = slicer.util.addVolumeFromArray(sitk.GetArrayFromImage(phantom.image), ijkToRAS=ijkToRas, name="VQSegTest chest")
        return volumeNode, sitk.GetArrayFromImage(phantom.label)

    def _trainTinyModel(self, logic, volumeNode, truth, pool):
        """No model to start from: pool the phantom with its true label, fine-tune from scratch, activate the result."""
        classes = [{"value": 1, "id": "lung_tumour", "name": "Lung tumour", "color": [0.86, 0.24, 0.24], "terminology": ""}]
        truthNode = scene.emptySegmentation(slicer.mrmlScene, classes, volumeNode, "truth")
        slicer.util.updateSegmentBinaryLabelmapFromArray(truth, truthNode, "lung_tumour", volumeNode)
        segmentation_tags.recordClasses(truthNode, classes)
        logic.addToPool(truthNode, pool)
        bootstrap = logic.finetune(pool, iterations=2, device="cpu", fromScratch=True)
        logic.activateVersion(bootstrap["model"], bootstrap["version"])
        slicer.mrmlScene.RemoveNode(truthNode)
