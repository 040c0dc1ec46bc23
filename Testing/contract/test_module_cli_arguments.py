"""Every argument list the module builds is accepted by the real CLI parser, with the values meant.

The lists are prefixed as the runner prefixes them (VQSegLib.process.CliRunner.commandLine), so a
flag renamed in VQSegCore, or a global option moved, fails here and not in a clinician's Slicer.
"""

import pytest

from VQSegCore.cli.app import build_parser
from VQSegCore.cli.commands import COMMANDS
from VQSegCore.errors import InputError
from VQSegCore.models import DEFAULT_MODEL_NAME
from VQSegLib import cli_arguments
from VQSegLib.process import CliRunner

CANCEL_FILE = "/work/run/cancel"


def parse(arguments):
    """The namespace the child process would see."""
    commandLine = CliRunner("python", "/core").commandLine(arguments, CANCEL_FILE)
    assert commandLine[:3] == ["python", "-m", "VQSegCore"]
    namespace = build_parser(COMMANDS).parse_args(commandLine[3:])
    assert namespace.events is True and namespace.cancel_file == CANCEL_FILE
    return namespace


def test_segment_arguments():
    args = parse(cli_arguments.segmentArguments("/w/input.nrrd", "/w/label.nii.gz", model="lung-lesion@v0002",
                                                roiRasCorners=[-10.5, -45, 0, 30, 5.25, 60], uncertaintyPath="/w/u.nii.gz", device="cpu"))
    assert (args.command, str(args.input), str(args.output)) == ("segment", "/w/input.nrrd", "/w/label.nii.gz")
    assert args.model == "lung-lesion@v0002" and args.model_dir is None
    assert args.roi_ras == [-10.5, -45.0, 0.0, 30.0, 5.25, 60.0]
    assert str(args.uncertainty) == "/w/u.nii.gz" and args.device == "cpu"
    minimal = parse(cli_arguments.segmentArguments("/w/input.nrrd", "/w/label.nii.gz"))
    assert minimal.model is None and minimal.roi_ras is None and minimal.uncertainty is None and minimal.device == "auto"


def test_pool_arguments():
    added = parse(cli_arguments.poolAddArguments("default", "/w/image.nrrd", labelPath="/w/label.nii.gz", draftPath="/h/drafts/d.nii.gz",
                                                 sourceName="-3: CT chest", draftModel="lung-lesion@v0002", classesPath="/w/classes.json"))
    assert (added.command, added.pool_action, added.pool, str(added.image)) == ("pool", "add", "default", "/w/image.nrrd")
    assert (str(added.label), str(added.draft), str(added.classes)) == ("/w/label.nii.gz", "/h/drafts/d.nii.gz", "/w/classes.json")
    assert added.source_name == "-3: CT chest" and added.draft_model == "lung-lesion@v0002" and added.case is None
    unlabelled = parse(cli_arguments.poolAddArguments("/data/pool", "/w/image.nrrd", draftPath="/h/d.nii.gz"))
    assert unlabelled.label is None and unlabelled.pool == "/data/pool"
    updated = parse(cli_arguments.poolUpdateArguments("default", "case-0001-3fa9c1", "/w/label.nii.gz"))
    assert (updated.pool_action, updated.case, str(updated.label), updated.image) == ("add", "case-0001-3fa9c1", "/w/label.nii.gz", None)
    listed = parse(cli_arguments.poolListArguments("default"))
    assert (listed.pool_action, listed.pool) == ("list", "default")
    shown = parse(cli_arguments.poolShowArguments("default", "case-0001-3fa9c1"))
    assert (shown.pool_action, shown.case_id, shown.pool) == ("show", "case-0001-3fa9c1", "default")


def test_finetune_and_models_arguments():
    timed = parse(cli_arguments.finetuneArguments("default", modelName="lung-lesion", minutes=10, device="cuda"))
    assert (timed.command, timed.pool, timed.model, timed.minutes, timed.iterations, timed.device) == (
        "finetune", "default", "lung-lesion", 10.0, None, "cuda")
    counted = parse(cli_arguments.finetuneArguments("/p", iterations=2))
    assert counted.iterations == 2 and counted.minutes is None and counted.model is None and counted.from_scratch is False
    assert parse(cli_arguments.finetuneArguments("/p", iterations=2, fromScratch=True)).from_scratch is True
    with pytest.raises(ValueError):
        cli_arguments.finetuneArguments("/p", minutes=5, iterations=2)
    assert parse(cli_arguments.modelsListArguments()).action == "list"
    assert parse(cli_arguments.modelsListArguments("lung-lesion")).name == "lung-lesion"
    activated = parse(cli_arguments.modelsActivateArguments("lung-lesion", "v0003"))
    assert (activated.action, activated.model) == ("activate", "lung-lesion@v0003")
    rolled = parse(cli_arguments.modelsRollbackArguments("lung-lesion"))
    assert (rolled.action, rolled.name) == ("rollback", "lung-lesion")
    exported = parse(cli_arguments.modelsExportArguments("lung-lesion", "v0002", "/w/lung-lesion-v0002.tar"))
    assert (exported.action, exported.model, str(exported.out)) == ("export", "lung-lesion@v0002", "/w/lung-lesion-v0002.tar")
    imported = parse(cli_arguments.modelsImportArguments("/w/lung-lesion-v0002.tar", "lung-lesion"))
    assert (imported.action, str(imported.archive), imported.name) == ("import", "/w/lung-lesion-v0002.tar", "lung-lesion")


def test_a_doctored_flag_is_rejected():
    arguments = cli_arguments.segmentArguments("/w/input.nrrd", "/w/label.nii.gz", roiRasCorners=[0, 0, 0, 1, 1, 1])
    with pytest.raises(InputError):
        parse([a.replace("--roi-ras", "--roi") for a in arguments])
    with pytest.raises(InputError):
        parse([a.replace("--pool=", "--pool-name=") for a in cli_arguments.poolListArguments("default")])


def test_default_model_name_matches_the_core():
    assert cli_arguments.DEFAULT_MODEL_NAME == DEFAULT_MODEL_NAME
    assert cli_arguments.modelName("") == DEFAULT_MODEL_NAME
    assert cli_arguments.modelName("other@v0002") == "other"


def flagLiterals(source: str):
    import ast

    return sorted({node.value for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("--")})


def test_the_module_builds_arguments_only_here():
    """No flag is spelled outside cli_arguments.py, so the checks above cover every list the Logic passes."""
    from contract_checks import EXTENSION

    for path in [EXTENSION / "VQSeg.py", *sorted((EXTENSION / "VQSegLib").glob("*.py"))]:
        if path.name not in ("cli_arguments.py", "process.py"):  # process.py adds the global --events --cancel-file
            assert flagLiterals(path.read_text(encoding="utf-8")) == [], path.name
    assert flagLiterals('arguments = ["segment", "--device", "cpu"]') == ["--device"]
