"""RunController (the Logic's blocking path) over the real runner and the real CLI: the pool round trip the
module does, with the argument builders and result readers it uses. No Slicer: images come from SimpleITK."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from contract_checks import REPO
from VQSegCore.classes import LUNG_TUMOUR
from VQSegLib import cli_arguments, home, model_card, result_text
from VQSegLib.process import DONE, FAILED, CliRunner, CliRunnerError
from VQSegLib.runs import FinishedRun, RunController, VQSegRunError


@pytest.fixture
def controller():
    return RunController(CliRunner(sys.executable, str(REPO)))


@pytest.fixture
def caseFiles(tmp_path):
    """A small CT and a tumour label on its grid, as the module writes them (NRRD image, NIfTI label)."""
    image = sitk.GetImageFromArray(np.full((6, 12, 10), -800, dtype=np.int16))
    image.SetSpacing((1.5, 1.5, 3.0))
    image.SetOrigin((-7.0, 12.0, 30.0))
    labels = np.zeros((6, 12, 10), dtype=np.uint8)
    labels[2:4, 4:8, 3:6] = 1
    label = sitk.GetImageFromArray(labels)
    label.CopyInformation(image)
    work = tmp_path / "work"
    work.mkdir()
    sitk.WriteImage(image, str(work / "image.nrrd"))
    sitk.WriteImage(label, str(work / "label.nii.gz"))
    (work / "classes.json").write_text(model_card.classTableJson(LUNG_TUMOUR.to_list()))
    return work


def test_pool_round_trip_through_the_real_cli(controller, caseFiles, tmp_path):
    environment = home.childEnvironment(str(tmp_path / "home"), "cpu")
    pool = "test-pool"
    completed = []
    added = controller.run(cli_arguments.poolAddArguments(pool, str(caseFiles / "image.nrrd"), labelPath=str(caseFiles / "label.nii.gz"),
                                                          sourceName="CT chest", draftModel="lung-lesion@v0001",
                                                          classesPath=str(caseFiles / "classes.json")),
                           environment, onCompleted=lambda run, outcome: completed.append((run.state, outcome["action"])))
    assert completed == [(DONE, "add")]
    caseId = added["case"]["id"]
    assert added["case"]["status"] == "labelled"
    poolFolder = home.poolFolder(str(tmp_path / "home"), pool)
    assert home.isPool(poolFolder) and Path(added["pool"]) == Path(poolFolder)

    listing = controller.run(cli_arguments.poolListArguments(pool), environment)
    rows = result_text.poolRows(listing)
    assert [(row[0], row[1], row[2]) for row in rows] == [(caseId, "labelled", "CT chest")]

    shown = controller.run(cli_arguments.poolShowArguments(pool, caseId), environment)
    files = shown["case"]["files"]
    assert {"image.nii.gz", "label.nii.gz"} <= set(files) and all(os.path.isfile(path) for path in files.values())
    assert model_card.poolClassTable(shown["pool"]) == LUNG_TUMOUR.to_list()

    updated = controller.run(cli_arguments.poolUpdateArguments(pool, caseId, str(caseFiles / "label.nii.gz")), environment)
    assert (updated["action"], updated["case"]["id"]) == ("update", caseId)


def test_a_failed_run_raises_and_reports(controller, tmp_path):
    environment = home.childEnvironment(str(tmp_path / "home"), "auto")
    completed = []
    with pytest.raises(VQSegRunError) as raised:
        controller.run(cli_arguments.poolShowArguments(str(tmp_path / "nowhere"), "case-0001"), environment,
                       onCompleted=lambda run, outcome: completed.append((run.state, outcome)))
    assert completed == [(FAILED, None)]
    assert raised.value.run.returnCode == 2 and "nowhere" in str(raised.value)


def test_an_import_failure_fails_the_run(controller, caseFiles, tmp_path):
    environment = home.childEnvironment(str(tmp_path / "home"), "auto")
    arguments = cli_arguments.poolAddArguments("p", str(caseFiles / "image.nrrd"), classesPath=str(caseFiles / "classes.json"))

    def importResult(run):
        raise KeyError("segments")

    with pytest.raises(VQSegRunError, match="Importing the result failed"):
        controller.run(arguments, environment, importResult=importResult)
    assert not controller.isBusy()


def test_a_run_that_cannot_start_removes_its_work_folder(tmp_path):
    controller = RunController(CliRunner(str(tmp_path / "no-python"), str(REPO)))
    workDir = tmp_path / "work"
    workDir.mkdir()
    (workDir / "input.nrrd").write_bytes(b"x")
    with pytest.raises(CliRunnerError):
        controller.run(["pool", "list"], {}, workDir=str(workDir))
    assert not workDir.exists()


def test_finish_without_run_keeps_the_contract():
    calls = []
    result = {"cases": []}
    assert RunController(None).finishWithoutRun(result, onCompleted=lambda run, outcome: calls.append((run, outcome))) is result
    assert isinstance(calls[0][0], FinishedRun) and calls[0][0].state == DONE and calls[0][1] is result
