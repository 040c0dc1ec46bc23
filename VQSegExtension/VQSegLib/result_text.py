"""What the panel shows for the CLI's events: table rows, summaries, warnings, training progress.

Pure functions of the event dicts (VQSegCore/events.py), so they are tested without Slicer and
the widget only copies strings into Qt widgets. Missing keys never raise: an older or newer core
may leave a field out, and a blank cell is better than a broken panel.
"""

import os
from typing import Dict, List, Optional, Tuple

from VQSegLib.process import describeProgress

POOL_COLUMNS = ("Case", "Status", "Source", "Updated", "Edited voxels")
MODEL_COLUMNS = ("Version", "Status", "Active", "Created", "Held-out Dice", "Note")


def shortDate(isoText: Optional[str]) -> str:
    """'2026-11-26T06:27:13+00:00' -> '2026-11-26 06:27' (UTC, as stored)."""
    if not isoText:
        return ""
    return str(isoText).replace("T", " ")[:16]


def _number(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


# ---- segment ------------------------------------------------------------------------------------

def oodWarning(segmentResult: Optional[dict]) -> str:
    """The out-of-distribution warning of a segment result, or ""."""
    ood = (segmentResult or {}).get("ood") or {}
    return str(ood.get("warning") or "")


def segmentSummary(segmentResult: Optional[dict], classNames: Optional[Dict[str, str]] = None) -> str:
    """'Lung tumour: 12.3 ml. 70 slices in 4.1 s (cpu).'"""
    result = segmentResult or {}
    names = classNames or {}
    parts = []
    for item in result.get("classes") or []:
        if not isinstance(item, dict):
            continue
        name = names.get(item.get("id"), item.get("id", "class"))
        volume = item.get("ml")
        parts.append(f"{name}: {volume:.1f} ml" if isinstance(volume, (int, float)) else f"{name}: {item.get('voxels', '?')} voxels")
    text = "; ".join(parts) or "No classes in the result"
    total = (result.get("timings_s") or {}).get("total")
    if isinstance(total, (int, float)):
        text += f". Done in {total:.1f} s"
        if result.get("device"):
            text += f" ({result['device']})"
    text += "."
    # The core warns when a CT was searched without an ROI (a lung-lesion model learnt from regions around lesions).
    if any(str(warning).startswith("made without an ROI") for warning in result.get("warnings") or []):
        text += " Made without an ROI: check every finding, or place an ROI around the lesion and segment again."
    return text


# ---- pool ---------------------------------------------------------------------------------------

def editedVoxelsText(edited) -> str:
    """meta.json's edited_voxels ({class id: n} or None) as one cell."""
    if not isinstance(edited, dict):
        return ""
    if len(edited) == 1:
        return str(next(iter(edited.values())))
    return ", ".join(f"{classId}: {count}" for classId, count in edited.items())


def poolRows(poolListResult: Optional[dict]) -> List[Tuple[str, ...]]:
    """One row per case of `pool list`, in POOL_COLUMNS order."""
    rows = []
    for case in (poolListResult or {}).get("cases") or []:
        if isinstance(case, dict):
            rows.append((str(case.get("id", "")), str(case.get("status", "")), str(case.get("source_name") or ""),
                         shortDate(case.get("updated") or case.get("added")), editedVoxelsText(case.get("edited_voxels"))))
    return rows


def poolSummary(poolListResult: Optional[dict]) -> str:
    result = poolListResult or {}
    text = f"{result.get('count', 0)} cases: {result.get('labelled', 0)} corrected, {result.get('unlabelled', 0)} unlabelled."
    unreadable = result.get("unreadable") or []
    if unreadable:
        text += f" {len(unreadable)} damaged (run 'vqseg pool verify')."
    return text


# ---- models -------------------------------------------------------------------------------------

def modelVersions(modelsListResult: Optional[dict], modelName: str) -> List[dict]:
    versions = ((modelsListResult or {}).get("models") or {}).get(modelName) or []
    return [v for v in versions if isinstance(v, dict)]


def deviceAdvice(infoResult: Optional[dict]) -> str:
    """One paragraph for the panel from `vqseg info`: where VQSeg will run, and what to expect there."""
    device = (infoResult or {}).get("device") or {}
    threads = (infoResult or {}).get("threads") or {}
    gpus = device.get("cuda") if isinstance(device.get("cuda"), list) else []
    memory = device.get("cuda_memory_gb") or []
    if gpus:
        shown = ", ".join(f"{name} ({memory[i]:g} GB)" if i < len(memory) else name for i, name in enumerate(gpus))
        advice = f"GPU: {shown}. Segment and Fine-tune run on it (Device: auto or cuda)."
        if memory and max(memory) < 4:
            advice += " Under 4 GB of GPU memory: if a run stops for lack of memory, choose Device: cpu."
        return advice
    cores = threads.get("cpu_cores") or "?"
    advice = (f"No CUDA GPU found: VQSeg runs on the CPU ({cores} cores). Segmenting inside an ROI takes seconds, a whole "
              "chest CT about a minute; give Fine-tune a time budget of 20 minutes or more.")
    if device.get("mps"):
        advice += " This Mac's GPU (MPS) is not used by VQSeg."
    return advice


def versionReport(modelsListResult: Optional[dict], modelName: str, version: str) -> Optional[str]:
    """What to open for a version: its report.md when fine-tuning wrote one, else its folder; None if unknown."""
    for entry in modelVersions(modelsListResult, modelName):
        if str(entry.get("version")) == version and entry.get("path"):
            report = os.path.join(str(entry["path"]), "report.md")
            return report if os.path.isfile(report) else str(entry["path"])
    return None


def activeVersion(modelsListResult: Optional[dict], modelName: str) -> Optional[str]:
    for version in modelVersions(modelsListResult, modelName):
        if version.get("active"):
            return str(version.get("version"))
    return None


def modelChoices(modelsListResult: Optional[dict]) -> List[Tuple[str, str]]:
    """(label, --model value) for the model selector: each model's active version first, then each version."""
    choices = []
    for name in sorted(((modelsListResult or {}).get("models") or {}).keys()):
        active = activeVersion(modelsListResult, name)
        choices.append((f"{name} (active: {active})" if active else f"{name} (no active version)", name))
        for version in modelVersions(modelsListResult, name):
            label = f"{name}@{version.get('version')}  [{version.get('status', '')}]"
            choices.append((label, f"{name}@{version.get('version')}"))
    return choices


def modelRows(modelsListResult: Optional[dict], modelName: str) -> List[Tuple[str, ...]]:
    """One row per version, in MODEL_COLUMNS order."""
    rows = []
    for version in modelVersions(modelsListResult, modelName):
        metrics = version.get("metrics") or {}
        rows.append((str(version.get("version", "")), str(version.get("status", "")), "yes" if version.get("active") else "",
                     shortDate(version.get("created")), _number(metrics.get("held_out_dice")), str(version.get("reason") or "")))
    return rows


# ---- fine-tune ----------------------------------------------------------------------------------

def trainingFraction(event: Optional[dict], budgetSeconds: Optional[float]) -> Optional[float]:
    """How far a fine-tune is: done/total when counted in iterations, else the share of the time budget used."""
    if not event or event.get("event") != "progress":
        return None
    total = event.get("total")
    if isinstance(total, (int, float)) and total > 0:
        return min(1.0, max(0.0, float(event.get("done", 0)) / total))
    left = event.get("time_left_s")
    if event.get("stage") == "train" and budgetSeconds and isinstance(left, (int, float)):
        return min(1.0, max(0.0, 1.0 - left / budgetSeconds))
    return None


def trainingStatus(event: Optional[dict], lastValidationDice: Optional[float] = None) -> str:
    """'Training: iteration 120, about 3 min left. Loss 0.412, validation Dice 0.81.'"""
    text = describeProgress(event)
    if not text:
        return ""
    details = []
    if event.get("stage") == "train" and isinstance(event.get("loss"), (int, float)):
        details.append(f"loss {event['loss']:.3f}")
    dice = event.get("val_dice") if isinstance(event.get("val_dice"), (int, float)) else lastValidationDice
    if isinstance(dice, (int, float)):
        details.append(f"validation Dice {dice:.3f}")
    if not details:
        return text
    joined = ", ".join(details)
    return f"{text}. {joined[0].upper()}{joined[1:]}."


def finetuneVerdict(finetuneResult: Optional[dict]) -> str:
    """The gate's decision in one paragraph."""
    result = finetuneResult or {}
    version = result.get("version", "?")
    parent = result.get("parent") or "none"
    dice = ""
    if isinstance(result.get("held_out_dice"), (int, float)):
        dice = f" Held-out Dice {result['held_out_dice']:.3f}"
        if isinstance(result.get("parent_held_out_dice"), (int, float)):
            dice += f" (current model {result['parent_held_out_dice']:.3f})."
        else:
            dice += "."
    if result.get("promoted"):
        head = f"New version {version} passed the check against {parent} and is now active."
    else:
        head = f"New version {version} did not pass the check; {parent} stays active."
    reason = result.get("reason")
    return head + dice + (f" Reason: {reason}." if reason else "")


def finetuneQuestion(finetuneResult: Optional[dict]) -> str:
    """What 'Use new model' / 'Keep current' decides, for the dialog."""
    verdict = finetuneVerdict(finetuneResult)
    if (finetuneResult or {}).get("promoted"):
        return verdict + "\n\nUse the new model, or keep the current one (the new version stays stored and can be activated later)?"
    return verdict + "\n\nUse the new model anyway, or keep the current one?"
