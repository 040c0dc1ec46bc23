"""`vqseg models`: list, show, activate, roll back, export and import model versions.

    vqseg models list [NAME]
    vqseg models show NAME[@VERSION]
    vqseg models activate NAME@VERSION
    vqseg models rollback NAME
    vqseg models export NAME@VERSION --out FILE.vqseg.tar
    vqseg models import FILE.vqseg.tar --name NAME
"""

from __future__ import annotations

import argparse
from pathlib import Path

from VQSegCore.errors import InputError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("models", help="list, activate, roll back, export and import model versions",
                                   description="The model store under $VQSEG_HOME/models, plus the shipped default models.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="models and their versions")
    listing.add_argument("name", nargs="?")
    show = actions.add_parser("show", help="a version's card")
    show.add_argument("model", metavar="NAME[@VERSION]")
    activate = actions.add_parser("activate", help="make a version the one Segment uses")
    activate.add_argument("model", metavar="NAME@VERSION")
    rollback = actions.add_parser("rollback", help="re-activate the version active before the current one")
    rollback.add_argument("name")
    export = actions.add_parser("export", help="write a version as one archive (card + safetensors)")
    export.add_argument("model", metavar="NAME@VERSION")
    export.add_argument("--out", type=Path, required=True)
    importing = actions.add_parser("import", help="add an exported archive as a new candidate version")
    importing.add_argument("archive", type=Path)
    importing.add_argument("--name", required=True)
    for sub in (listing, show, activate, rollback, export, importing):
        sub.set_defaults(run=run)
    parser.set_defaults(run=run)
    return parser


def _split(model: str, need_version: bool, store) -> tuple[str, str]:
    name, _, version = model.partition("@")
    if not version:
        if need_version:
            raise InputError(f"give a version: {name}@VERSION", "vqseg models list shows the versions")
        version = store.active(name)
        if version is None:
            raise InputError(f"model {name} has no active version", "vqseg models list shows the versions")
    return name, version


def run(args: argparse.Namespace, context) -> dict:
    from VQSegCore.model.persistence import read_card
    from VQSegCore.models import ModelStore

    store = ModelStore()
    if args.action == "list":
        names = [args.name] if args.name else store.names()
        # a summary per version: per-case metrics of every version would bury the list ('models show' has them)
        return {"models": {name: [v.summary() for v in store.versions(name)] for name in names}, "store": str(store.root)}
    if args.action == "show":
        name, version = _split(args.model, False, store)
        info = store.info(name, version)
        return {**info.to_dict(), "card": read_card(info.path)}
    if args.action == "activate":
        name, version = _split(args.model, True, store)
        store.activate(name, version)
        return {"name": name, "active": version}
    if args.action == "rollback":
        return {"name": args.name, "active": store.rollback(args.name)}
    if args.action == "export":
        from VQSegCore.output_guard import check_outputs

        check_outputs([args.out])
        name, version = _split(args.model, True, store)
        return {"archive": str(store.export_version(name, version, args.out))}
    if args.action == "import":
        version = store.import_version(args.archive, args.name)
        return {"name": args.name, "version": version, "status": "candidate"}
    raise InputError(f"unknown action {args.action!r}")
