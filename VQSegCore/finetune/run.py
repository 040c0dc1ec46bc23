"""`finetune`: semi-supervised training on a pool, from the active model, gated before promotion.

    result = finetune("~/.vqseg/pools/clinic", model_name="lung-lesion", minutes=10)

1. The pool's cases become a dataset spec; labelled cases are held out by `holdout.py`.
2. Training starts from the active version's weights (from scratch when the store has none), on
   the remaining labelled cases alone for the first 70% of a time or iteration budget (the
   supervised warm-up), then on them plus every unlabelled one (half as many unlabelled crops per
   step as labelled, two strong views of each, the confident pseudo-labels' CE: the authors' code).
   Its folder is `<store>/<name>/.runs/<run>/`; `resume=True` continues the last unfinished run.
3. Parent and candidate (the last EMA teacher, never selected on the held-out cases) are scored on
   the held-out cases; the gate (`gate.py`) decides. The candidate always becomes a new version:
   promoted and activated, or kept as a candidate with the reason.
4. report.md, curves.png and overlays.png go into the new version's folder; `done.json` in the run
   folder then marks the run finished.

A run folder holds pool-spec.json and spec.json (the pool as it was), plan.json (the parent version,
written last, so a run with it is prepared), train/ (vqseg train's folder) and done.json. A fine-tune
killed at any point resumes: before plan.json it is prepared again; before train/'s first checkpoint
training starts again; after the version was written it is found by its card's `training.run` and
not written twice.

Under torchrun (`torchrun --nproc_per_node N -m VQSegCore finetune ...`) every rank trains (see
train/distributed.py); rank 0 alone reads the pool, creates the run folder, scores the gate and writes
the version and the report. What rank 0 prepared (the `Plan`) is broadcast, not derived: the run
folder's name and whether training resumes depend on what rank 0 found on disk. Rank 0's outcome,
value or error, is broadcast too, so every rank ends with the same exit code and message.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from VQSegCore.atomic import write_json_atomic
from VQSegCore.file_lock import try_lock
from VQSegCore.dataset_spec import DatasetSpec
from VQSegCore.errors import InputError
from VQSegCore.finetune.gate import DEFAULT_MARGIN, Verdict, decide, score_models
from VQSegCore.finetune.holdout import split_for_validation
from VQSegCore.finetune.report import overlay_item, write_finetune_report
from VQSegCore.model import VQSegConfig, load_model
from VQSegCore.model.persistence import read_card
from VQSegCore.models import DEFAULT_MODEL_NAME, ModelStore
from VQSegCore.events import SILENT
from VQSegCore.train.distributed import Distributed
from VQSegCore.train.settings import FINETUNE, TrainingSettings

RUNS = ".runs"
DONE_FILE = "done.json"
RUN_LOCK = ".lock"  # held by the process running the fine-tune (file_lock: released if it dies)
_HELD_RUN_LOCKS: dict = {}  # run folder → the descriptor holding its lock, in this process
PLAN_FILE = "plan.json"
SPEC_FILE = "spec.json"
TRAIN_DIR = "train"
SNAPSHOT_DIR = "pool-snapshot"  # the pool's cases as checked and frozen for this run (pool/reading.py)


@dataclass(frozen=True)
class Plan:
    """What rank 0 prepared and every rank trains from."""

    run: Path
    pool: str
    parent_version: str | None
    parent_dir: Path | None
    resume_training: bool
    skipped_damaged: tuple = ()  # (case id, what is wrong) of damaged cases left out with skip_damaged


class _Recorder:
    """Passes events on to the user's reporter and keeps the curves for the report."""

    def __init__(self, reporter) -> None:
        self.reporter = reporter or SILENT
        self.curves: list[dict] = []
        self.validation: list[dict] = []

    def progress(self, stage, done, total, **extra):
        if stage == "train":
            self.curves.append({"iteration": done, **{k: v for k, v in extra.items() if isinstance(v, (int, float))}})
        self.reporter.progress(stage, done, total, **extra)

    def metric(self, **values):
        if values.get("stage") == "validate":
            self.validation.append({"iteration": values["iteration"], "mean_dice": values["mean_dice"]})
        self.reporter.metric(**values)

    def log(self, *args, **kwargs):
        self.reporter.log(*args, **kwargs)


def finetune(
    pool_folder,
    settings: TrainingSettings | None = None,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    margin: float = DEFAULT_MARGIN,
    device: str = "auto",
    resume: bool = False,
    skip_damaged: bool = False,
    from_scratch: bool = False,
    reporter=None,
    cancel=None,
    store: ModelStore | None = None,
    distributed: Distributed | None = None,
    **changes,
) -> dict:
    """Fine-tune, gate and write a new version; the same result dict on every rank.

    `settings`: the training settings (default the FINETUNE preset of VQSegCore.train.settings), with
    `changes` applied: `finetune(pool, minutes=10, supervised_only=True)`. Checkpoints follow validation.
    `distributed`: the torchrun ranks (default: read from the environment; one process without torchrun).
    `skip_damaged`: train without the pool's damaged cases (named in a warning, the card and the report)
    instead of stopping with InputError.
    `from_scratch`: allow a model name the store does not know (a new model, trained from random
    weights); without it an unknown name is InputError, so that a typo cannot start a new model.
    """
    settings = (settings or FINETUNE).replace(**changes)
    if settings.iterations is None and settings.minutes is None:
        raise InputError("fine-tuning needs --minutes M or --iterations N", "e.g. --minutes 10")
    # checked before a run folder exists: bad input writes nothing
    settings = settings.replace(checkpoint_every=settings.validate_every).check()
    store = store or ModelStore()
    ranks = distributed or Distributed.from_environment()
    with ranks.joined(device):  # the process group must exist before rank 0 shares its plan
        recorder = _Recorder(reporter)
        plan = ranks.on_main(lambda: _prepare(Path(pool_folder), store, model_name, resume, skip_damaged, from_scratch))
        try:
            for case_id, reason in plan.skipped_damaged:
                recorder.log(f"case {case_id} is damaged and left out of this fine-tune: {reason}", "warning")
            spec = DatasetSpec.load(plan.run / SPEC_FILE)
            started = datetime.datetime.now(datetime.timezone.utc)
            summary = _train(plan, spec, settings=settings, recorder=recorder, cancel=cancel, device=device, ranks=ranks)
            return ranks.on_main(lambda: _conclude(plan, spec, store, model_name, summary, recorder, margin=margin,
                                                   supervised_only=settings.supervised_only, device=device, cancel=cancel,
                                                   started=started))
        finally:
            _release_run(plan.run)  # rank 0 holds it; elsewhere nothing to release


# ---- preparing (rank 0) ------------------------------------------------------------------------
def _prepare(pool_folder: Path, store: ModelStore, model_name: str, resume: bool, skip_damaged: bool, from_scratch: bool) -> Plan:
    if resume:
        run = _unfinished_run(store, model_name)
        _lock_run(run)
        _clear_old_runs(store, model_name, keep=run)
        if not (run / PLAN_FILE).is_file():  # killed while being prepared: prepare it again
            shutil.rmtree(run / SNAPSHOT_DIR, ignore_errors=True)
            _write_run_inputs(run, _open_pool(pool_folder), store, model_name, skip_damaged)
        else:
            _check_same_pool(run, pool_folder)
    else:
        pool = _open_pool(pool_folder)  # before the run folder: a missing pool leaves nothing behind
        if model_name not in store.names() and not from_scratch:
            known = ", ".join(store.names()) or "none"
            raise InputError(f"the model store has no model {model_name!r} (known: {known})",
                             "check the name with 'vqseg models list', or pass --from-scratch to train a new model from random weights")
        _clear_old_runs(store, model_name, keep=None)
        run = _new_run_folder(store, model_name)
        _lock_run(run)
        try:
            _write_run_inputs(run, pool, store, model_name, skip_damaged)
        except BaseException:
            _release_run(run)
            _discard_run(run)  # bad input writes nothing (docs/architecture.md §3.1), and --resume must not find it
            raise
    return _plan_of(run, store, model_name)


def _open_pool(pool_folder: Path):
    from VQSegCore.pool import Pool

    return Pool.open(pool_folder)


def _write_run_inputs(run: Path, pool, store: ModelStore, model_name: str, skip_damaged: bool) -> None:
    """The pool's checked snapshot, the training spec with its held-out cases, then plan.json (last:
    its presence means prepared). Training reads only the snapshot, never the live pool."""
    from VQSegCore.pool.reading import export_spec

    records, damaged = pool.snapshot(run / SNAPSHOT_DIR)
    if damaged and not skip_damaged:
        shown = "; ".join(f"{case_id}: {reason}" for case_id, reason in damaged[:10]) + ("; …" if len(damaged) > 10 else "")
        raise InputError(f"the pool {pool.folder} has {len(damaged)} damaged case(s): {shown}",
                         "run 'vqseg pool verify', then restore or remove the damaged cases; or pass --skip-damaged to fine-tune without them")
    if not records and damaged:  # an empty pool is export_spec's to report
        raise InputError(f"the pool {pool.folder} has no intact case", "restore the damaged cases, or add cases with 'vqseg pool add'")
    pool_spec = DatasetSpec.load(export_spec(pool.layout, pool.info, records, run / "pool-spec.json"))
    training_cases, held_out = split_for_validation(pool_spec.cases())
    if not any(case.labelled for case in training_cases):
        raise InputError(f"the pool {pool.folder} has no labelled case to train on (besides those held out)",
                         "correct more drafts and add them with vqseg pool add --case ID --label L")
    cases = [dataclasses.replace(case, split="train") for case in training_cases]
    cases += [dataclasses.replace(case, split="val") for case in held_out]
    DatasetSpec(entries=cases, classes=pool_spec.classes, name=f"finetune {model_name}").save(run / SPEC_FILE)
    parent = store.active(model_name)
    _config_for(store.path(model_name, parent) if parent else None, DatasetSpec.load(run / SPEC_FILE))  # class tables agree?
    # The parent is fixed now: after a kill the active version may be this run's own candidate.
    write_json_atomic(run / PLAN_FILE, {"model": model_name, "parent": parent, "pool": str(pool.folder.resolve()),
                                        "skipped_damaged": [list(item) for item in damaged]})


def _plan_of(run: Path, store: ModelStore, model_name: str) -> Plan:
    recorded = json.loads((run / PLAN_FILE).read_text(encoding="utf-8"))
    parent = recorded["parent"]
    return Plan(run=run, pool=recorded["pool"], parent_version=parent, parent_dir=store.path(model_name, parent) if parent else None,
                resume_training=_training_resumes(run / TRAIN_DIR),
                skipped_damaged=tuple(tuple(item) for item in recorded.get("skipped_damaged", [])))


def _training_resumes(train_dir: Path) -> bool:
    """Resume from train/'s checkpoint; without one (killed before the first) train/ is started again."""
    from VQSegCore.train.checkpoint import checkpoint_folder

    if checkpoint_folder(train_dir) is not None:
        return True
    shutil.rmtree(train_dir, ignore_errors=True)
    return False


def _check_same_pool(run: Path, pool_folder: Path) -> None:
    recorded = Path(json.loads((run / PLAN_FILE).read_text(encoding="utf-8"))["pool"])
    if recorded.resolve() != Path(pool_folder).resolve():
        raise InputError(f"--resume: the unfinished fine-tune {run.name} is on the pool {recorded}, not {pool_folder}",
                         f"resume with --pool {recorded}, or start a new fine-tune without --resume")


# ---- training (every rank) ---------------------------------------------------------------------
def _train(plan: Plan, spec: DatasetSpec, *, settings: TrainingSettings, recorder, cancel, device, ranks: Distributed) -> dict:
    from VQSegCore.train.loop import train

    return train(spec, _config_for(plan.parent_dir, spec), plan.run / TRAIN_DIR,
                 settings.replace(initial_model=str(plan.parent_dir) if plan.parent_dir else None),
                 resume=plan.resume_training, reporter=recorder, cancel=cancel, device=device, distributed=ranks)


# ---- gate, version, report (rank 0) ------------------------------------------------------------
def _conclude(plan: Plan, spec: DatasetSpec, store: ModelStore, model_name: str, summary: dict, recorder: _Recorder, *,
              margin: float, supervised_only: bool, device: str, cancel, started: datetime.datetime) -> dict:
    held_out = spec.labelled("val")
    candidate_dir = plan.run / TRAIN_DIR / "last"
    recorder.log(f"scoring parent ({plan.parent_version or 'none'}) and candidate on {len(held_out)} held-out case(s)")
    scored = score_models({"parent": plan.parent_dir, "candidate": candidate_dir}, held_out, device=device, cancel=cancel)
    version = _version_made_by(store, model_name, plan.run)
    if version is None:
        verdict = decide(scored["scores"], margin)
        training = _training_record(plan, spec, candidate_dir, supervised_only)
        version = _add_candidate(store, model_name, plan, candidate_dir, training, scored["scores"], verdict)
    else:  # written before a kill: the store keeps one version per run and its recorded verdict
        verdict = _recorded_verdict(store.info(model_name, version))
        recorder.log(f"{model_name} {version} was written by this fine-tune before it stopped; finishing it")
    if verdict.promote and not _activated_before(store, model_name, version):
        store.activate(model_name, version, reason="fine-tune passed the gate")
    recorder.progress("report", 0, 1, version=version)
    files = _write_report(plan, spec, store, model_name, version, summary, recorder, scored, verdict, started)
    write_json_atomic(plan.run / DONE_FILE, {"version": version, "promoted": verdict.promote})
    recorder.progress("report", 1, 1, version=version)
    return {
        "model": model_name, "version": version, "parent": plan.parent_version, "promoted": verdict.promote, "reason": verdict.reason,
        "active": store.active(model_name), "held_out_dice": verdict.candidate_dice, "parent_held_out_dice": verdict.parent_dice,
        "iterations": summary["iterations"], "elapsed_s": summary["elapsed_s"], "report": [str(f) for f in files],
        "run": str(plan.run), "skipped_damaged": [case_id for case_id, _ in plan.skipped_damaged],
    }


def _training_record(plan: Plan, spec: DatasetSpec, candidate_dir: Path, supervised_only: bool) -> dict:
    """The card's `training` section; `run` is how a resumed fine-tune finds the version it wrote."""
    return {**read_card(candidate_dir).get("training", {}), "pool": plan.pool, "supervised_only": supervised_only,
            "labelled_cases": len(spec.labelled("train")), "unlabelled_cases": len([c for c in spec.cases("train") if not c.labelled]),
            "held_out": [case.id for case in spec.labelled("val")], "run": str(plan.run),
            "skipped_damaged": [{"case": case_id, "reason": reason} for case_id, reason in plan.skipped_damaged]}


def _add_candidate(store: ModelStore, model_name: str, plan: Plan, candidate_dir: Path, training: dict, scores: dict,
                   verdict: Verdict) -> str:
    model, card = load_model(candidate_dir)
    metrics = {"held_out_dice": verdict.candidate_dice, "parent_held_out_dice": verdict.parent_dice,
               "held_out_cases": scores.get("candidate", {}), "parent_held_out_cases": scores.get("parent", {})}
    return store.add_version(model_name, model, training=training, metrics=metrics, parent=plan.parent_version,
                             ood_reference=card.get("ood_reference"), status="promoted" if verdict.promote else "candidate",
                             reason=verdict.reason)


def _version_made_by(store: ModelStore, model_name: str, run: Path) -> str | None:
    for info in store.versions(model_name):
        if info.status != "shipped" and Path(read_card(info.path).get("training", {}).get("run", "")).name == run.name:
            return info.version
    return None


def _activated_before(store: ModelStore, model_name: str, version: str) -> bool:
    """Activated by this run before a kill (a later rollback is the user's choice and stays)."""
    return store.active(model_name) == version or store.was_activated(model_name, version)


def _recorded_verdict(info) -> Verdict:
    return Verdict(info.status == "promoted", info.reason or "", info.metrics.get("parent_held_out_dice"),
                   info.metrics.get("held_out_dice"))


def _write_report(plan: Plan, spec: DatasetSpec, store: ModelStore, model_name: str, version: str, summary: dict,
                  recorder: _Recorder, scored: dict, verdict: Verdict, started: datetime.datetime) -> list[Path]:
    held_out = spec.labelled("val")
    overlays = [overlay_item(case.id, case.image, _label_array(case), {k: v[case.id] for k, v in scored["predictions"].items()})
                for case in held_out[:3]]
    report_summary = {
        "model": model_name, "version": version, "parent": plan.parent_version or "none (from scratch)", "pool": plan.pool,
        "labelled for training": len(spec.labelled("train")), "unlabelled": len([c for c in spec.cases("train") if not c.labelled]),
        "held out": len(held_out), "damaged cases left out": len(plan.skipped_damaged), "iterations": summary["iterations"], "minutes": round(summary["elapsed_s"] / 60, 2),
        "mode": _mode(read_card(store.path(model_name, version)).get("training", {})), "started": started.isoformat(timespec="seconds"),
    }
    return write_finetune_report(store.path(model_name, version), curves=recorder.curves, validation=recorder.validation,
                                 scores=scored["scores"], verdict=verdict, summary=report_summary, overlays=overlays)


def _mode(training: dict) -> str:
    if training.get("supervised_only"):
        return "supervised only"
    warmup = training.get("supervised_warmup") or 0.0
    step = training.get("step_options") or {}
    views = step.get("strong_views", 2)
    loss = "CE + Dice" if step.get("unlabelled_dice") else "CE"
    return ("semi-supervised (QPM)" + (f", labelled cases only for the first {warmup:.0%} of the budget" if warmup else "")
            + f"; pseudo-label {loss}, {views} strong view{'s' if views > 1 else ''} per unlabelled crop")


# ---- run folders -------------------------------------------------------------------------------
def _unfinished_run(store: ModelStore, name: str) -> Path:
    runs = store.root / name / RUNS
    unfinished = sorted(p for p in runs.glob("ft-*") if p.is_dir() and not (p / DONE_FILE).exists()) if runs.is_dir() else []
    if not unfinished:
        raise InputError(f"no unfinished fine-tune of model {name} to resume", "start a new one without --resume")
    return unfinished[-1]


def _new_run_folder(store: ModelStore, name: str) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    run = store.root / name / RUNS / f"ft-{stamp}-{os.getpid()}"
    run.mkdir(parents=True, exist_ok=False)
    return run


def _clear_old_runs(store: ModelStore, name: str, keep: Path | None) -> None:
    """Delete the run folders of finished fine-tunes and of killed ones that can no longer be resumed
    (a new run replaces the one --resume would take). A run whose lock is held belongs to a fine-tune
    that is still going (in any process, on any machine sharing the folder): it is left alone."""
    runs = store.root / name / RUNS
    for run in sorted(runs.glob("ft-*")) if runs.is_dir() else []:
        if run == keep or not run.is_dir():
            continue
        try:
            fd = os.open(run / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            if try_lock(fd):
                shutil.rmtree(run, ignore_errors=True)
        finally:
            os.close(fd)


def _lock_run(run: Path) -> None:
    """Hold the run's lock until `_release_run`: other fine-tunes then neither delete nor resume it."""
    fd = os.open(run / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    if not try_lock(fd):
        os.close(fd)
        raise InputError(f"the fine-tune {run.name} is still running in another process", "wait for it to finish, or start a new one without --resume")
    _HELD_RUN_LOCKS[run] = fd


def _release_run(run: Path) -> None:
    fd = _HELD_RUN_LOCKS.pop(run, None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the lock


def _discard_run(run: Path) -> None:
    shutil.rmtree(run, ignore_errors=True)
    for empty in (run.parent, run.parent.parent):  # .runs and the model folder, when this run created them
        try:
            empty.rmdir()
        except OSError:
            break


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
