"""`vqseg evaluate`: Dice, Jaccard, HD95 and ASD (mm) of predicted label maps against their labels.

Two forms:
  vqseg evaluate --prediction P --label L [--classes classes.json] [--out FOLDER]
  vqseg evaluate --dataset spec.json --predictions DIR [--split test|val|train] [--out FOLDER]
In the dataset form the prediction of case `<id>` is `DIR/<id>` plus one of PREDICTION_SUFFIXES.
Everything that can be checked without reading a volume (arguments, spec, that every prediction
exists) is checked first; outputs are written only once every case has been evaluated.
The metric definitions and the empty-mask rule live in `VQSegCore.metrics`.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from VQSegCore import __version__
from VQSegCore.atomic import check_writable_folder, write_text_atomic
from VQSegCore.classes import LUNG_TUMOUR, ClassTable
from VQSegCore.dataset_spec import SPLITS, DatasetSpec, class_table_from_json
from VQSegCore.errors import InputError
from VQSegCore.output_guard import check_outputs

PREDICTION_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")
_USAGE = "use either --prediction P --label L, or --dataset spec.json --predictions DIR"


@dataclass(frozen=True)
class Pair:
    """One prediction to score against one label."""

    case: str
    prediction: Path
    label: Path


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted label maps against labels: Dice, Jaccard, HD95 and ASD in mm",
        description="Score predictions against labels per volume and class (Dice, Jaccard, HD95, ASD in mm, volumes in mL). "
        "One pair: --prediction P --label L. A dataset: --dataset spec.json --predictions DIR, where case <id> is DIR/<id>.nii.gz "
        "(or .nii, .nrrd, .seg.nrrd, .mha). An empty prediction of a non-empty label counts as 'missed': Dice 0, no distance.",
    )
    pair = parser.add_argument_group("one pair")
    pair.add_argument("--prediction", type=Path, metavar="P", help="predicted label map")
    pair.add_argument("--label", type=Path, metavar="L", help="reference label map on the same voxel grid")
    pair.add_argument("--classes", type=Path, metavar="JSON", help="class table JSON: a list of classes, or an object with a \"classes\" list (default: lung tumour = 1)")
    dataset = parser.add_argument_group("a dataset")
    dataset.add_argument("--dataset", type=Path, metavar="SPEC", help="dataset spec JSON (cases with image, label, split)")
    dataset.add_argument("--predictions", type=Path, metavar="DIR", help="folder holding <case id>.nii.gz (or .nii, .nrrd, .seg.nrrd, .mha) per case")
    dataset.add_argument("--split", choices=SPLITS, help="split to evaluate (default: test if the spec has it, else val)")
    parser.add_argument("--out", type=Path, metavar="FOLDER", help="write metrics.json and metrics.md into this folder (created if missing)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    from VQSegCore.metrics import summarize

    classes, pairs, source = _plan(args)
    out = _checked_out_folder(args.out)
    if source.get("unlabelled_skipped"):
        context.reporter.log(f"skipped {source['unlabelled_skipped']} unlabelled case(s) of the {source['split']!r} split")
    cases = []
    for done, pair in enumerate(pairs):
        context.cancel.check()
        context.reporter.progress("evaluate", done, len(pairs), case=pair.case)
        case = _evaluate(pair, classes)
        for class_id, scores in case["metrics"].items():
            context.reporter.metric(stage="evaluate", case=pair.case, **{"class": class_id}, **_event_scores(scores))
        cases.append(case)
    context.reporter.progress("evaluate", len(pairs), len(pairs))
    summary = summarize([case["metrics"] for case in cases], classes)
    report = _report(args, source, classes, cases, summary)
    context.cancel.check()
    written = _write_report(out, report) if out else []
    return _result(source, summary, written)


# ---- what to evaluate (no volume is read here) -------------------------------------------------

def _plan(args: argparse.Namespace) -> tuple[ClassTable, list[Pair], dict]:
    pair_form = any(v is not None for v in (args.prediction, args.label, args.classes))
    dataset_form = any(v is not None for v in (args.dataset, args.predictions, args.split))
    if pair_form and dataset_form:
        raise InputError("--prediction/--label/--classes and --dataset/--predictions/--split are two different forms", _USAGE)
    if dataset_form:
        return _plan_dataset(args)
    if args.prediction is None or args.label is None:
        raise InputError("evaluate needs a prediction and a label", _USAGE)
    for path in (args.prediction, args.label):
        if not path.exists():
            raise InputError(f"{path}: no such file", "check the path")
    classes = _read_class_table(args.classes) if args.classes else LUNG_TUMOUR
    case = _strip_suffix(args.prediction.name)
    return classes, [Pair(case, args.prediction, args.label)], {"form": "pair", "prediction": str(args.prediction), "label": str(args.label)}


def _plan_dataset(args: argparse.Namespace) -> tuple[ClassTable, list[Pair], dict]:
    if args.dataset is None or args.predictions is None:
        raise InputError("the dataset form needs both --dataset and --predictions", _USAGE)
    if not args.predictions.is_dir():
        raise InputError(f"{args.predictions}: no such folder of predictions", "give the folder that holds <case id>.nii.gz per case")
    spec = DatasetSpec.load(args.dataset)
    split = args.split or _default_split(spec)
    labelled = spec.require_labelled(split)
    pairs = [Pair(case.id, find_prediction(args.predictions, case.id), case.label) for case in labelled]
    source = {"form": "dataset", "dataset": str(args.dataset), "name": spec.name, "split": split, "predictions": str(args.predictions)}
    source["unlabelled_skipped"] = len(spec.cases(split)) - len(labelled)
    return spec.classes, pairs, source


def _default_split(spec: DatasetSpec) -> str:
    for split in ("test", "val"):
        if spec.cases(split):
            return split
    raise InputError(f"dataset spec {spec.path}: has no test or val cases", "name the split to evaluate with --split")


def find_prediction(folder: Path, case_id: str) -> Path:
    """`folder/<case_id>` with exactly one of PREDICTION_SUFFIXES; InputError naming the case otherwise."""
    found = [folder / f"{case_id}{suffix}" for suffix in PREDICTION_SUFFIXES if (folder / f"{case_id}{suffix}").is_file()]
    if not found:
        names = ", ".join(f"{case_id}{suffix}" for suffix in PREDICTION_SUFFIXES)
        raise InputError(f"case {case_id!r}: no prediction in {folder} (looked for {names})", "segment the case first, or evaluate another split")
    if len(found) > 1:
        raise InputError(f"case {case_id!r}: more than one prediction in {folder}: {', '.join(p.name for p in found)}", "keep exactly one prediction per case")
    return found[0]


def _read_class_table(path: Path) -> ClassTable:
    where = f"class table {path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as problem:
        raise InputError(f"{where}: no such file", "check the path") from problem
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise InputError(f"{where}: not a readable JSON file ({problem})", "give a JSON list of classes, or a JSON object with a \"classes\" list") from problem
    # A model card or a dataset spec carries its table under "classes"; accept those files as they are.
    return class_table_from_json(data.get("classes") if isinstance(data, dict) else data, where)


def _checked_out_folder(folder: Path | None) -> Path | None:
    if folder is None:
        return None
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write to {folder}: it is a file, not a folder", "give a folder for --out")
    check_outputs([folder / "metrics.json", folder / "metrics.md"])
    check_writable_folder(folder / "metrics.json" if folder.is_dir() else folder)
    return folder


def _strip_suffix(name: str) -> str:
    for suffix in sorted(PREDICTION_SUFFIXES + (".mhd", ".nhdr"), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ---- evaluating one case ----------------------------------------------------------------------

def _evaluate(pair: Pair, classes: ClassTable) -> dict:
    import SimpleITK as sitk

    from VQSegCore.io import read_label_map
    from VQSegCore.metrics import image_metrics, unexpected_values

    try:
        label = read_label_map(pair.label, what="label")
        prediction = read_label_map(
            pair.prediction, reference=label, what="the prediction",
            reference_name=f"the label {pair.label}",
            hint="segment the same image the label belongs to, or resample the prediction onto the label's grid",
        )
    except InputError as problem:
        raise InputError(f"case {pair.case!r}: {problem.message}", problem.hint) from problem
    for what, image, path in (("label", label, pair.label), ("prediction", prediction, pair.prediction)):
        if unknown := unexpected_values(sitk.GetArrayViewFromImage(image), classes):
            raise InputError(
                f"case {pair.case!r}: the {what} {path} holds label values {unknown} that the class table does not list (known: {classes.values})",
                "evaluate with the class table the labels were made with (--classes, or \"classes\" in the dataset spec)",
            )
    return {
        "id": pair.case,
        "prediction": str(pair.prediction),
        "label": str(pair.label),
        "size": list(label.GetSize()),
        "spacing_mm": list(label.GetSpacing()),
        "metrics": image_metrics(prediction, label, classes),
    }


def _event_scores(scores) -> dict:
    return {"status": scores.status, "dice": scores.dice, "jaccard": scores.jaccard, "hd95_mm": scores.hd95_mm, "asd_mm": scores.asd_mm}


# ---- outputs ----------------------------------------------------------------------------------

def _report(args: argparse.Namespace, source: dict, classes: ClassTable, cases: list[dict], summary: dict) -> dict:
    return {
        "software": {"name": "vqseg", "version": __version__},
        "command": _command_line(args),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "classes": classes.to_list(),
        "empty_mask_rule": "both empty: Dice 1, Jaccard 1, HD95 0, ASD 0 (both_empty); label only: Dice 0, Jaccard 0, no distance (missed); "
        "prediction only: Dice 0, Jaccard 0, no distance (false_positive). Distance statistics use the volumes where distances are defined.",
        "cases": [{**case, "metrics": {cid: m.to_dict() for cid, m in case["metrics"].items()}} for case in cases],
        "summary": summary,
    }


def _command_line(args: argparse.Namespace) -> list[str]:
    """The command as it would be typed again, rebuilt from the parsed options (not sys.argv)."""
    words = ["vqseg", "evaluate"]
    for option in ("prediction", "label", "classes", "dataset", "predictions", "split", "out"):
        if getattr(args, option) is not None:
            words += [f"--{option}", str(getattr(args, option))]
    return words


def _write_report(folder: Path, report: dict) -> list[str]:
    try:
        folder.mkdir(exist_ok=True)
    except OSError as problem:
        raise InputError(f"cannot create {folder}: {problem.strerror}", "choose a folder you can write to") from problem
    json_path, markdown_path = folder / "metrics.json", folder / "metrics.md"
    write_text_atomic(json_path, json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    write_text_atomic(markdown_path, _markdown(report))
    return [str(json_path), str(markdown_path)]


def _finite(value):
    """Strict JSON: NaN (an undefined distance) becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _markdown(report: dict) -> str:
    source = report["source"]
    if source["form"] == "dataset":
        title = f"{source.get('name') or source['dataset']}, split {source['split']}"
    else:
        title = f"{Path(source['prediction']).name} against {Path(source['label']).name}"
    lines = [
        f"# Evaluation: {title}", "",
        f"vqseg {report['software']['version']} · {report['created']} · `{shlex.join(report['command'])}`", "",
        "## Per volume", "",
        "| case | class | status | Dice | Jaccard | HD95 mm | ASD mm | label mL | prediction mL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in report["cases"]:
        for class_id, m in case["metrics"].items():
            lines.append(
                f"| {case['id']} | {class_id} | {m['status']} | {_num(m['dice'], 4)} | {_num(m['jaccard'], 4)} | "
                f"{_num(m['hd95_mm'], 2)} | {_num(m['asd_mm'], 2)} | {_num(m['label_ml'], 2)} | {_num(m['prediction_ml'], 2)} |"
            )
    lines += [
        "", "## Summary", "",
        "Mean ± std (median) over volumes; HD95 and ASD over the n volumes where they are defined.", "",
        "| class | volumes | Dice | Jaccard | HD95 mm | n | ASD mm | missed | false positive | both empty |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    volumes = report["summary"]["volumes"]
    for class_id, s in report["summary"]["classes"].items():
        lines.append(
            f"| {class_id} | {volumes} | {_stat(s['dice'], 4)} | {_stat(s['jaccard'], 4)} | {_stat(s['hd95_mm'], 2)} | {s['hd95_mm']['n']} | "
            f"{_stat(s['asd_mm'], 2)} | {s['missed']} | {s['false_positive']} | {s['both_empty']} |"
        )
    overall = report["summary"]["mean_over_classes"]
    lines.append(
        f"| mean over classes | {volumes} | {_num(overall['dice'], 4)} | {_num(overall['jaccard'], 4)} | {_num(overall['hd95_mm'], 2)} | | "
        f"{_num(overall['asd_mm'], 2)} | {overall['missed']} | {overall['false_positive']} | {overall['both_empty']} |"
    )
    lines += ["", f"Empty masks: {report['empty_mask_rule']}", ""]
    return "\n".join(lines)


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _stat(statistics: dict, digits: int) -> str:
    if statistics["n"] == 0:
        return "—"
    return f"{_num(statistics['mean'], digits)} ± {_num(statistics['std'], digits)} ({_num(statistics['median'], digits)})"


def _result(source: dict, summary: dict, written: list[str]) -> dict:
    result: dict = {"cases": summary["volumes"]}
    if source["form"] == "dataset":
        result["split"] = source["split"]
    result["summary"] = {
        class_id: {
            "dice": s["dice"]["mean"], "jaccard": s["jaccard"]["mean"], "hd95_mm": s["hd95_mm"]["mean"], "asd_mm": s["asd_mm"]["mean"],
            "missed": s["missed"], "false_positive": s["false_positive"], "both_empty": s["both_empty"],
        }
        for class_id, s in summary["classes"].items()
    }
    result["failures"] = summary["mean_over_classes"]["failures"]
    if written:
        result["written"] = written
    return result
