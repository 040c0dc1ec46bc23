"""`vqseg pool`: collect cases for fine-tuning, check them, and export a dataset spec.

    vqseg pool add CT [--label L] [--draft D] [--source-name N] [--draft-model M] --pool NAME_OR_PATH
    vqseg pool add --case ID --label L --pool P         # label an unlabelled case, or re-correct one
    vqseg pool list | show ID | remove ID --pool P
    vqseg pool verify [--repair] --pool P               # exit 2 when the pool is damaged
    vqseg pool export --out spec.json [--val-fraction F] --pool P

`--pool` takes a bare name (a folder under $VQSEG_HOME/pools) or a path; without it, $VQSEG_POOL.
The first `add` creates the pool (lung tumour classes, or `--classes FILE`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from VQSegCore.errors import InputError

_POOL_HELP = "pool name (under $VQSEG_HOME/pools) or folder; default: $VQSEG_POOL"


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pool",
        help="the training pool: add corrected cases, list, verify, export a dataset spec",
        description="Manage a training pool: one folder of cases (CT, corrected label, model draft) that "
        "fine-tuning learns from. Every change is atomic and locked; 'verify' checks every file's hash.",
    )
    parser.add_argument("--pool", default=argparse.SUPPRESS, help=_POOL_HELP)
    actions = parser.add_subparsers(dest="pool_action", metavar="ACTION", required=True)

    add = _action(actions, "add", "add a case (CT + optional label and draft), or give a case a new label with --case")
    add.add_argument("image", nargs="?", type=Path, help="CT volume: NIfTI, NRRD, MHA or a DICOM series folder")
    add.add_argument("--label", type=Path, help="corrected label map on the CT's grid")
    add.add_argument("--draft", type=Path, help="the model's label map before correction, on the CT's grid")
    add.add_argument("--source-name", help="free text naming where the case came from (default: the input's base name); no patient data")
    add.add_argument("--draft-model", metavar="VERSION", help="model version that made the draft")
    add.add_argument("--case", metavar="ID", help="update this case's label instead of adding a case (needs --label)")
    add.add_argument("--create", action="store_true", help="create the pool if it does not exist (add also does so by default)")
    add.add_argument("--classes", type=Path, metavar="FILE", help="class table JSON for a new pool (default: lung tumour)")

    _action(actions, "list", "list the cases: id, status, dates, edited voxels")
    show = _action(actions, "show", "show one case's record")
    show.add_argument("case_id", metavar="ID")
    remove = _action(actions, "remove", "remove a case")
    remove.add_argument("case_id", metavar="ID")
    verify = _action(actions, "verify", "check every file and hash; exit 2 when the pool is damaged")
    verify.add_argument("--repair", action="store_true", help="delete leftovers of interrupted commands and restore half-swapped cases")
    export = _action(actions, "export", "write a dataset spec for 'vqseg train'")
    export.add_argument("--out", type=Path, required=True, metavar="SPEC", help="dataset spec JSON to write")
    export.add_argument("--val-fraction", type=float, default=0.0, metavar="F", help="share of labelled cases for the 'val' split (default 0: no val)")
    export.add_argument("--seed", type=int, default=0, help="seed for choosing the val cases")
    export.add_argument("--labelled-only", action="store_true", help="leave out unlabelled cases")
    export.add_argument("--labeled-only", dest="labelled_only_legacy", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)
    return parser


def _action(actions, name: str, help_text: str) -> argparse.ArgumentParser:
    sub = actions.add_parser(name, help=help_text, description=help_text)
    sub.add_argument("--pool", default=argparse.SUPPRESS, help=_POOL_HELP)
    sub.add_argument("--lock-timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                     help="how long to wait for another pool command to finish (default 60)")
    return sub


def run(args: argparse.Namespace, context) -> dict:
    handlers = {"add": _add, "list": _list, "show": _show, "remove": _remove, "verify": _verify, "export": _export}
    return handlers[args.pool_action](args, context, _pool_location(args))


def _pool_location(args: argparse.Namespace) -> Path:
    from VQSegCore.pool import pool_folder

    return pool_folder(getattr(args, "pool", None))


def _lock_timeout(args: argparse.Namespace) -> float:
    from VQSegCore.pool import DEFAULT_LOCK_TIMEOUT_S

    timeout = getattr(args, "lock_timeout", DEFAULT_LOCK_TIMEOUT_S)
    if timeout < 0:
        raise InputError(f"--lock-timeout {timeout:g} is negative", "give a number of seconds, e.g. 60")
    return timeout


def _open(args: argparse.Namespace, folder: Path):
    from VQSegCore.pool import Pool

    return Pool.open(folder, lock_timeout_s=_lock_timeout(args))


def _add(args: argparse.Namespace, context, folder: Path) -> dict:
    if args.case is not None:
        return _update(args, context, folder)
    if args.image is None:
        raise InputError("pool add needs an IMAGE (or --case ID --label L to update a case)", "e.g. vqseg pool add ct.nii.gz --label corrected.nii.gz --pool pilot")
    from VQSegCore.classes import LUNG_TUMOUR
    from VQSegCore.pool import Pool, read_case_inputs

    context.reporter.progress("add", 0, 2)
    wanted_classes = _read_class_file(args.classes) if args.classes else None
    classes = Pool.classes_at(folder) or wanted_classes or LUNG_TUMOUR
    # Read and check everything before the pool is created or touched: bad input writes nothing.
    inputs = read_case_inputs(args.image, classes, label=args.label, draft=args.draft, source_name=args.source_name)
    context.reporter.progress("add", 1, 2)
    context.cancel.check()
    pool, created = Pool.open_or_create(folder, classes=wanted_classes, lock_timeout_s=_lock_timeout(args))
    if created:
        context.reporter.log(f"created pool {pool.folder} (classes: {', '.join(pool.classes.ids)})")
    record = pool.add_inputs(inputs, draft_model=args.draft_model)
    context.reporter.progress("add", 2, 2)
    return {"pool": str(pool.folder), "created": created, "action": "add", "case": record.summary(), "case_folder": str(record.folder)}


def _update(args: argparse.Namespace, context, folder: Path) -> dict:
    extras = [flag for flag, value in (("IMAGE", args.image), ("--draft", args.draft), ("--source-name", args.source_name),
                                       ("--draft-model", args.draft_model), ("--classes", args.classes)) if value is not None]
    if extras:
        raise InputError(f"pool add --case updates only the label; {', '.join(extras)} cannot be given with it", "give --case ID --label L")
    if args.label is None:
        raise InputError("pool add --case needs --label", "give the corrected label map: --case ID --label L")
    pool = _open(args, folder)
    context.reporter.progress("update", 0, 1)
    record = pool.update_label(args.case, args.label)
    context.reporter.progress("update", 1, 1)
    return {"pool": str(pool.folder), "created": False, "action": "update", "case": record.summary(), "case_folder": str(record.folder)}


def _list(args: argparse.Namespace, context, folder: Path) -> dict:
    pool = _open(args, folder)
    records = pool.cases()
    unreadable = pool.unreadable_cases()
    for case_id, reason in unreadable:
        context.reporter.log(f"case {case_id} is damaged and not listed: {reason} (run 'vqseg pool verify')", "warning")
    labelled = sum(1 for r in records if r.has_label)
    return {"pool": str(pool.folder), "name": pool.name, "classes": pool.classes.ids, "count": len(records),
            "labelled": labelled, "unlabelled": len(records) - labelled, "cases": [r.summary() for r in records],
            "unreadable": [case_id for case_id, _ in unreadable]}


def _show(args: argparse.Namespace, context, folder: Path) -> dict:
    pool = _open(args, folder)
    return {"pool": str(pool.folder), "case": pool.case(args.case_id).to_dict()}


def _remove(args: argparse.Namespace, context, folder: Path) -> dict:
    pool = _open(args, folder)
    record = pool.remove(args.case_id)
    return {"pool": str(pool.folder), "removed": record.case_id, "status": record.status}


def _verify(args: argparse.Namespace, context, folder: Path) -> dict:
    pool = _open(args, folder)
    report = pool.verify(repair=args.repair, progress=lambda done, total: context.reporter.progress("verify", done, total))
    for line in report.repaired:
        context.reporter.log(f"repaired: {line}")
    for line in report.warnings:
        context.reporter.log(line, "warning")
    if report.leftovers:
        context.reporter.log(f"{len(report.leftovers)} leftover(s) of interrupted commands (harmless): {', '.join(report.leftovers)}; "
                             "'vqseg pool verify --repair' deletes them", "warning")
    if not report.intact:
        shown = "; ".join(report.problems[:20]) + (f"; … ({len(report.problems)} problems)" if len(report.problems) > 20 else "")
        raise InputError(f"pool {pool.folder} is damaged: {shown}",
                         "restore the named files from a backup, or remove the damaged cases with 'vqseg pool remove ID'")
    return report.to_dict()


def _export(args: argparse.Namespace, context, folder: Path) -> dict:
    from VQSegCore.dataset_spec import DatasetSpec

    from VQSegCore.output_guard import check_outputs

    check_outputs([args.out])
    pool = _open(args, folder)
    if args.labelled_only_legacy:
        context.reporter.log("--labeled-only is deprecated: use --labelled-only", "warning")
    labelled_only = args.labelled_only or args.labelled_only_legacy
    spec_path = pool.export_spec(args.out, val_fraction=args.val_fraction, seed=args.seed, include_unlabelled=not labelled_only)
    spec = DatasetSpec.load(spec_path)  # the same check `vqseg train` makes
    return {"pool": str(pool.folder), "spec": str(spec_path), "cases": len(spec.cases()), "labelled": len(spec.labelled()),
            "unlabelled": len(spec.cases()) - len(spec.labelled()), "val": len(spec.cases("val"))}


def _read_class_file(path: Path):
    """A class table from JSON: a list of classes, or any object with a "classes" list (pool.json, a spec, a model card)."""
    from VQSegCore.dataset_spec import class_table_from_json

    where = f"class table {path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise InputError(f"{where}: no such file", "check the path") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{where}: not valid JSON ({error})", 'give [{"value": 1, "id": "lung_tumour", ...}]') from error
    return class_table_from_json(data.get("classes") if isinstance(data, dict) else data, where)
