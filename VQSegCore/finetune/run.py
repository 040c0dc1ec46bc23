"""`finetune`: semi-supervised training on a pool, from the active model, gated before promotion.

    result = finetune("~/.vqseg/pools/clinic", model_name="lung-lesion", minutes=10)

1. The pool's cases become a dataset spec; labelled cases are held out by `holdout.py`.
2. Training starts from the active version's weights (from scratch when the store has none), on
   the remaining labelled cases plus every unlabelled one, under a time or iteration budget.
   Its folder is `<store>/<name>/.runs/<run>/`; `resume=True` continues the last unfinished run.
3. Parent and candidate (the last EMA teacher, never selected on the held-out cases) are scored on
   the held-out cases; the gate (`gate.py`) decides. The candidate always becomes a new version:
   promoted and activated, or kept as a candidate with the reason.
4. report.md, curves.png and overlays.png go into the new version's folder.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path

from VQSegCore.atomic import write_json_atomic
from VQSegCore.dataset_spec import DatasetSpec
from VQSegCore.errors import InputError
from VQSegCore.finetune.gate import DEFAULT_MARGIN, decide, score_models
from VQSegCore.finetune.holdout import split_for_validation
from VQSegCore.finetune.report import overlay_item, write_finetune_report
from VQSegCore.model import VQSegConfig, load_model
from VQSegCore.model.persistence import read_card
from VQSegCore.models import DEFAULT_MODEL_NAME, ModelStore

RUNS = ".runs"
DONE_FILE = "done.json"


class _Recorder:
    """Passes events on to the user's reporter and keeps the curves for the report."""

    def __init__(self, reporter) -> None:
        self.reporter = reporter
        self.curves: list[dict] = []
        self.validation: list[dict] = []

    def progress(self, stage, done, total, **extra):
        if stage == "train":
            self.curves.append({"iteration": done, **{k: v for k, v in extra.items() if isinstance(v, (int, float))}})
        if self.reporter is not None:
            self.reporter.progress(stage, done, total, **extra)

    def metric(self, **values):
        if values.get("stage") == "validate":
            self.validation.append({"iteration": values["iteration"], "mean_dice": values["mean_dice"]})
        if self.reporter is not None:
            self.reporter.metric(**values)

    def log(self, *args, **kwargs):
        if self.reporter is not None:
            self.reporter.log(*args, **kwargs)


def finetune(
    pool_folder,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    iterations: int | None = None,
    minutes: float | None = None,
    margin: float = DEFAULT_MARGIN,
    supervised_only: bool = False,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 8,
    crop_size: int = 96,
    validate_every: int = 50,
    resume: bool = False,
    reporter=None,
    cancel=None,
    store: ModelStore | None = None,
) -> dict:
    from VQSegCore.pool import Pool
    from VQSegCore.train.loop import train

    if iterations is None and minutes is None:
        raise InputError("fine-tuning needs --minutes M or --iterations N", "e.g. --minutes 10")
    store = store or ModelStore()
    pool = Pool.open(pool_folder)
    run = _run_folder(store, model_name, resume)
    recorder = _Recorder(reporter)

    spec_path = run / "spec.json"
    if not resume:
        pool_spec = DatasetSpec.load(pool.export_spec(run / "pool-spec.json"))
        training_cases, held_out = split_for_validation(pool_spec.cases())
        if not any(case.labelled for case in training_cases):
            raise InputError(f"the pool {pool.folder} has no labelled case to train on (besides those held out)",
                             "correct more drafts and add them with vqseg pool add --case ID --label L")
        cases = [dataclasses.replace(case, split="train") for case in training_cases]
        cases += [dataclasses.replace(case, split="val") for case in held_out]
        DatasetSpec(entries=cases, classes=pool_spec.classes, name=f"finetune {model_name}").save(spec_path)
    spec = DatasetSpec.load(spec_path)
    held_out = spec.labelled("val")

    parent_version = store.active(model_name)
    parent_dir = store.path(model_name, parent_version) if parent_version else None
    config = _config_for(parent_dir, spec)
    started = datetime.datetime.now(datetime.timezone.utc)
    summary = train(
        spec, config, run / "train", iterations=iterations, minutes=minutes, batch_size=batch_size, crop_size=crop_size,
        seed=seed, supervised_only=supervised_only, validate_every=validate_every, checkpoint_every=validate_every,
        resume=resume, reporter=recorder, cancel=cancel, device=device, initial_model=parent_dir,
    )
    candidate_dir = run / "train" / "last"
    recorder.log(f"scoring parent ({parent_version or 'none'}) and candidate on {len(held_out)} held-out case(s)")
    scored = score_models({"parent": parent_dir, "candidate": candidate_dir}, held_out, device=device, cancel=cancel)
    verdict = decide(scored["scores"], margin)

    model, card = load_model(candidate_dir)
    metrics = {"held_out_dice": verdict.candidate_dice, "parent_held_out_dice": verdict.parent_dice,
               "held_out_cases": scored["scores"].get("candidate", {}), "parent_held_out_cases": scored["scores"].get("parent", {})}
    training = {**card.get("training", {}), "pool": str(pool.folder), "supervised_only": supervised_only,
                "labelled_cases": len(spec.labelled("train")), "unlabelled_cases": len([c for c in spec.cases("train") if not c.labelled]),
                "held_out": [case.id for case in held_out], "run": str(run)}
    version = store.add_version(model_name, model, training=training, metrics=metrics, parent=parent_version,
                                ood_reference=card.get("ood_reference"), status="promoted" if verdict.promote else "candidate",
                                reason=verdict.reason)
    if verdict.promote:
        store.activate(model_name, version, reason="fine-tune passed the gate")
    version_dir = store.path(model_name, version)
    overlays = [overlay_item(case.id, case.image, _label_array(case), {k: v[case.id] for k, v in scored["predictions"].items()})
                for case in held_out[:3]]
    report_summary = {
        "model": model_name, "version": version, "parent": parent_version or "none (from scratch)", "pool": str(pool.folder),
        "labelled for training": training["labelled_cases"], "unlabelled": training["unlabelled_cases"], "held out": len(held_out),
        "iterations": summary["iterations"], "minutes": round(summary["elapsed_s"] / 60, 2), "mode": "supervised only" if supervised_only else "semi-supervised (QPM)",
        "started": started.isoformat(timespec="seconds"),
    }
    files = write_finetune_report(version_dir, curves=recorder.curves, validation=recorder.validation, scores=scored["scores"],
                                  verdict=verdict, summary=report_summary, overlays=overlays)
    write_json_atomic(run / DONE_FILE, {"version": version, "promoted": verdict.promote})
    return {
        "model": model_name, "version": version, "parent": parent_version, "promoted": verdict.promote, "reason": verdict.reason,
        "active": store.active(model_name), "held_out_dice": verdict.candidate_dice, "parent_held_out_dice": verdict.parent_dice,
        "iterations": summary["iterations"], "elapsed_s": summary["elapsed_s"], "report": [str(f) for f in files], "run": str(run),
    }


def _run_folder(store: ModelStore, name: str, resume: bool) -> Path:
    runs = store.root / name / RUNS
    if resume:
        unfinished = sorted(p for p in runs.glob("ft-*") if p.is_dir() and not (p / DONE_FILE).exists()) if runs.is_dir() else []
        if not unfinished:
            raise InputError(f"no unfinished fine-tune of model {name} to resume", "start a new one without --resume")
        return unfinished[-1]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    run = runs / f"ft-{stamp}-{os.getpid()}"
    run.mkdir(parents=True, exist_ok=False)
    return run


def _config_for(parent_dir: Path | None, spec: DatasetSpec) -> VQSegConfig:
    if parent_dir is None:
        return VQSegConfig(classes=spec.classes)
    config = VQSegConfig.from_dict(read_card(parent_dir)["config"])
    if config.classes.values != spec.classes.values:
        raise InputError(f"the pool's classes {spec.classes.values} differ from the model's {config.classes.values}",
                         "fine-tune a model made for this pool's class table")
    return config


def _label_array(case):
    import SimpleITK as sitk

    from VQSegCore.io import read_label_map

    return sitk.GetArrayFromImage(read_label_map(case.label))


def run_summary(run: Path) -> dict:
    return json.loads((run / DONE_FILE).read_text()) if (run / DONE_FILE).exists() else {}
