"""The argument lists the module passes to `python -m VQSegCore` (after the runner's `--events --cancel-file F`).

Pure functions of plain values, importable without Slicer: a contract test parses every list
built here with the real CLI parser (VQSegCore.cli.app), so a renamed flag fails in CI, not in
a clinician's Slicer. Paths should be absolute: the child runs in its own working folder.
Positional values never start with '-' (paths are absolute; model names and case ids start with a
letter or digit), so no '--' separator is needed (its handling in nested subcommands differs
between Python versions).
"""

from typing import List, Optional, Sequence

DEFAULT_MODEL_NAME = "lung-lesion"  # VQSegCore.models.DEFAULT_MODEL_NAME (a contract test compares them)


def _number(value: float) -> str:
    return repr(float(value))


def _option(name: str, value: str) -> str:
    # '--name=value' keeps a value that starts with '-' (a volume called "-1") from reading as a flag.
    return f"{name}={value}"


def segmentArguments(inputPath: str, outputPath: str, model: Optional[str] = None,
                     roiRasCorners: Optional[Sequence[float]] = None, uncertaintyPath: Optional[str] = None,
                     device: str = "auto") -> List[str]:
    """`segment INPUT -o OUTPUT [--model NAME[@VERSION]] [--roi-ras x0 y0 z0 x1 y1 z1] [--uncertainty U] --device D`."""
    arguments = ["segment", str(inputPath), "--output", str(outputPath), "--device", device]
    if model:
        arguments.append(_option("--model", model))
    if roiRasCorners is not None:
        if len(roiRasCorners) != 6:
            raise ValueError(f"an ROI needs 6 numbers (two RAS corners), got {len(roiRasCorners)}")
        arguments += ["--roi-ras", *[_number(value) for value in roiRasCorners]]
    if uncertaintyPath:
        arguments += ["--uncertainty", str(uncertaintyPath)]
    return arguments


def poolAddArguments(pool: str, imagePath: str, labelPath: Optional[str] = None, draftPath: Optional[str] = None,
                     sourceName: Optional[str] = None, draftModel: Optional[str] = None,
                     classesPath: Optional[str] = None) -> List[str]:
    """A new case: with a label it is labelled, without one it joins as unlabelled data."""
    arguments = ["pool", "add", str(imagePath), _option("--pool", pool)]
    if labelPath:
        arguments += ["--label", str(labelPath)]
    if draftPath:
        arguments += ["--draft", str(draftPath)]
    if sourceName:
        arguments.append(_option("--source-name", sourceName))
    if draftModel:
        arguments.append(_option("--draft-model", draftModel))
    if classesPath:
        arguments += ["--classes", str(classesPath)]  # used only when this add creates the pool
    return arguments


def poolUpdateArguments(pool: str, caseId: str, labelPath: str) -> List[str]:
    """A new label for a case already in the pool (re-corrected, or an unlabelled case now labelled)."""
    return ["pool", "add", _option("--pool", pool), _option("--case", caseId), "--label", str(labelPath)]


def poolListArguments(pool: str) -> List[str]:
    return ["pool", "list", _option("--pool", pool)]


def poolShowArguments(pool: str, caseId: str) -> List[str]:
    return ["pool", "show", caseId, _option("--pool", pool)]


def finetuneArguments(pool: str, modelName: Optional[str] = None, minutes: Optional[float] = None,
                      iterations: Optional[int] = None, device: str = "auto", fromScratch: bool = False) -> List[str]:
    """Exactly one budget: minutes (the button) or iterations (tests). `fromScratch`: a model the store
    does not know yet, trained from random weights (the self-test's bootstrap)."""
    if (minutes is None) == (iterations is None):
        raise ValueError("give either minutes or iterations")
    arguments = ["finetune", _option("--pool", pool), "--device", device]
    if modelName:
        arguments.append(_option("--model", modelName))
    if minutes is not None:
        if minutes <= 0:
            raise ValueError(f"the time budget must be positive, got {minutes} minutes")
        arguments += ["--minutes", _number(minutes)]
    else:
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        arguments += ["--iterations", str(int(iterations))]
    if fromScratch:
        arguments.append("--from-scratch")
    return arguments


def infoArguments() -> List[str]:
    return ["info"]


def modelsListArguments(modelName: Optional[str] = None) -> List[str]:
    return ["models", "list"] + ([modelName] if modelName else [])


def modelsActivateArguments(modelName: str, version: str) -> List[str]:
    return ["models", "activate", f"{modelName}@{version}"]


def modelsRollbackArguments(modelName: str) -> List[str]:
    return ["models", "rollback", modelName]


def modelsExportArguments(modelName: str, version: str, archivePath: str) -> List[str]:
    return ["models", "export", f"{modelName}@{version}", "--out", archivePath]


def modelsImportArguments(archivePath: str, modelName: str) -> List[str]:
    return ["models", "import", archivePath, "--name", modelName]


def modelName(modelSpec: Optional[str]) -> str:
    """'lung-lesion@v0003' -> 'lung-lesion'; empty -> the default model."""
    return (modelSpec or "").partition("@")[0] or DEFAULT_MODEL_NAME
