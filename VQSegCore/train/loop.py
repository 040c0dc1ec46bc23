"""The training loop: data, SemiSupervisedStep, poly schedule, validation of the EMA teacher, checkpoints.

    result = train(spec, VQSegConfig(...), out_dir, iterations=1000, batch_size=8, crop_size=128)

Writes under `out_dir`:
    run.json          the settings of the run (a later run in the same folder must --resume it)
    cache/            the prepared volumes (see data.py)
    checkpoint/       the latest training checkpoint (checkpoint.py), every `checkpoint_every` and on cancel
    best/             the teacher with the best mean val Dice (save_model format)
    last/             the teacher at the end
Validation reads only the `val` split (each case's original image and label, scored on its own grid
as the fine-tune gate scores: VQSegCore.infer.scoring); the test split is never touched. The model
infers in windows of the training crop (its config's `inference_window`). On CPU a resumed run reaches
bit-identical weights to an uninterrupted one (the schedule depends only on the iteration).

Under torchrun (see distributed.py) every rank runs this function: each draws crops from its own
shard of the slices with its own random stream, gradients are averaged, and only rank 0 prepares
the cache first, validates, reports and writes. `batch_size` is per rank. A resumed distributed
run continues from rank 0's state, with the other ranks' random streams re-seeded (not bit-exact).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from VQSegCore.atomic import write_json_atomic
from VQSegCore.compute import PRECISION_DTYPES, wants_cuda
from VQSegCore.errors import Cancelled, InputError
from VQSegCore.infer.scoring import ScoredCase, mean_dice, read_scored_case, score_case
from VQSegCore.model import VQSegConfig, build_model, save_model
from VQSegCore.model.foundation import build_foundation
from VQSegCore.model.qpm import QuantizedPerturbation
from VQSegCore.train.checkpoint import checkpoint_folder, load_checkpoint, save_checkpoint
from VQSegCore.train.data import CaseCache, PreparedCase, SliceSampler, prepare_training_data
from VQSegCore.train.distributed import Distributed
from VQSegCore.train.ema import make_teacher
from VQSegCore.train.step import SemiSupervisedStep

POLY_POWER = 0.9


class _NullReporter:
    def progress(self, *args, **kwargs): pass
    def metric(self, **kwargs): pass
    def log(self, *args, **kwargs): pass


class _NoCancel:
    def check(self) -> None: pass


def poly_lr(base: float, progress: float) -> float:
    return base * max(0.0, 1.0 - progress) ** POLY_POWER


def train(
    spec,
    config: VQSegConfig,
    out_dir,
    *,
    iterations: int | None = None,
    minutes: float | None = None,
    batch_size: int = 8,
    unlabelled_batch_size: int | None = None,
    crop_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    supervised_only: bool = False,
    supervised_warmup: float = 0.0,
    validate_every: int = 100,
    validation_share: float | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    reporter=None,
    cancel=None,
    device: str = "cpu",
    optimiser: str = "adamw",
    weight_decay: float = 1e-4,
    foreground_fraction: float = 0.5,
    include_labelled_as_unlabelled: bool = True,
    cache_dir=None,
    step_options: dict | None = None,
    precision: str = "fp32",
    foundation: str = "none",
    foundation_weights=None,
    initial_model=None,
    encoder_weights=None,
    distributed: Distributed | None = None,
) -> dict:
    """Train and return a summary dict (iterations done, best val Dice, folders written).

    `foundation`: "none" or the frozen model PFA aligns to ("dinov2", "astra", "random"), with
    `foundation_weights` its local weights file where it needs one.
    `initial_model`: a model folder (save_model format) whose weights start the run (fine-tuning);
    its config must build the same network as `config`.
    `encoder_weights`: pretrained encoder weights for a new run (vit_dinov2: a DINOv2 ViT-S/14 file or
    "auto"; see build_model); a resumed run takes its weights from the checkpoint.
    `precision`: "fp32", "bf16" (autocast; CPU or GPU) or "fp16" (autocast with loss scaling; GPU).
    `unlabelled_batch_size`: unlabelled crops per step, two strong views of each by default (default
    `batch_size`; the authors' code uses half of it).
    `supervised_warmup`: the first fraction (0-1) of the budget trains on the labelled crops only: the
    teacher's pseudo-labels are not learnt from until the student has learnt from the labels. A model
    fine-tuned on a new kind of image starts with a teacher that is confidently wrong there.
    `validation_share`: the most of this process's time validation may take (0-1): a validation that is
    due waits while the time spent validating exceeds that share. None validates every `validate_every`
    iterations however long it takes (a fine-tune's held-out cases grow with its pool: it passes 0.1).
    `step_options`: keyword arguments of SemiSupervisedStep (numbers and strings: they are recorded in
    run.json and the card, and a resume must give the same).
    `distributed`: the torchrun ranks (default: read from the environment; one process without torchrun).
    """
    if iterations is None and minutes is None:
        raise InputError("give a number of iterations or a time budget in minutes", "e.g. --iterations 2000 or --minutes 30")
    if iterations is not None and iterations < 1:
        raise InputError(f"iterations must be >= 1, got {iterations}")
    if minutes is not None and minutes <= 0:
        raise InputError(f"minutes must be > 0, got {minutes}")
    unlabelled_batch_size = batch_size if unlabelled_batch_size is None else unlabelled_batch_size
    if batch_size < 1 or unlabelled_batch_size < 1 or validate_every < 1 or checkpoint_every < 1:
        raise InputError("batch sizes, --validate-every and --checkpoint-every must be >= 1")
    if optimiser not in ("adamw", "sgd"):
        raise ValueError(f"optimiser must be 'adamw' or 'sgd', got {optimiser!r}")
    if not 0.0 <= supervised_warmup < 1.0:
        raise InputError(f"the supervised warm-up must be a fraction in [0, 1), got {supervised_warmup}")
    if validation_share is not None and not 0.0 < validation_share <= 1.0:
        raise InputError(f"the validation share must be a fraction in (0, 1], got {validation_share}")
    if precision not in PRECISION_DTYPES:
        raise InputError(f"precision must be one of {', '.join(PRECISION_DTYPES)}, got {precision!r}")
    ranks = distributed or Distributed.from_environment()
    if precision == "fp16" and not wants_cuda(device):
        raise InputError("fp16 mixed precision needs a CUDA device", "use --precision bf16 on a CPU, or fp32")
    with ranks.joined(device) as dev:
        return _train(spec, config, Path(out_dir), dev, ranks, iterations=iterations, minutes=minutes, batch_size=batch_size,
                      unlabelled_batch_size=unlabelled_batch_size, crop_size=crop_size, lr=lr, seed=seed, supervised_only=supervised_only,
                      supervised_warmup=supervised_warmup, validate_every=validate_every, validation_share=validation_share,
                      checkpoint_every=checkpoint_every, resume=resume, reporter=reporter if ranks.is_main else None,
                      cancel=cancel, optimiser=optimiser, weight_decay=weight_decay, foreground_fraction=foreground_fraction,
                      include_labelled_as_unlabelled=include_labelled_as_unlabelled, cache_dir=cache_dir,
                      step_options=step_options, precision=precision, foundation=foundation,
                      foundation_weights=foundation_weights, initial_model=initial_model, encoder_weights=encoder_weights)


def _train(spec, config: VQSegConfig, out_dir: Path, dev: torch.device, ranks: Distributed, *, iterations, minutes, batch_size,
           unlabelled_batch_size, crop_size, lr, seed, supervised_only, supervised_warmup, validate_every, validation_share,
           checkpoint_every, resume, reporter, cancel, optimiser, weight_decay, foreground_fraction, include_labelled_as_unlabelled,
           cache_dir, step_options, precision, foundation, foundation_weights, initial_model, encoder_weights) -> dict:
    reporter = reporter or _NullReporter()
    cancel = cancel or _NoCancel()
    config = config.resolved()
    # A new model infers at its training field of view. A fine-tuned one keeps its parent's, whatever it
    # is: its parent was validated and chosen that way (the shipped lung model runs on whole slices).
    if initial_model is None and not config.inference_window and crop_size > 0 and crop_size % config.size_multiple == 0:
        config = dataclasses.replace(config, inference_window=crop_size)
    if not config.classes.values == spec.classes.values:
        config = dataclasses.replace(config, classes=spec.classes)
    foundation_model = None
    if foundation != "none":
        foundation_model = build_foundation(foundation, in_channels=config.preprocessing.in_channels, weights=foundation_weights,
                                            hu_window=config.preprocessing.hu_window).to(dev)
        config = dataclasses.replace(config, pfa_model=foundation, pfa_feature_dim=foundation_model.feature_dim)

    settings = {
        "config": config.to_dict(), "iterations": iterations, "minutes": minutes, "batch_size": batch_size,
        "unlabelled_batch_size": unlabelled_batch_size, "crop_size": crop_size, "lr": lr, "seed": seed,
        "supervised_only": supervised_only, "supervised_warmup": supervised_warmup, "optimiser": optimiser, "weight_decay": weight_decay,
        "foreground_fraction": foreground_fraction,
        "include_labelled_as_unlabelled": include_labelled_as_unlabelled, "dataset": str(spec.path) if spec.path else None,
        "precision": precision, "world_size": ranks.world_size, "foundation": foundation,
        "foundation_weights": str(foundation_weights) if foundation_weights else None,
        "initial_model": str(initial_model) if initial_model else None,
        "encoder_weights": (encoder_weights if encoder_weights in (None, "auto") else str(Path(encoder_weights).resolve())),
        "step_options": dict(step_options or {}),
    }
    problem = None
    if ranks.is_main:
        try:
            _check_out_folder(out_dir, settings, resume)
        except InputError as error:
            problem = error
    if ranks.any(problem is not None, dev):  # every rank stops with exit 2, none waits for the others
        raise problem or InputError(f"rank 0 refused the run folder {out_dir}", "see rank 0's message")

    # ---- data (the test split is never read) ------------------------------------------------
    cache = CaseCache(Path(cache_dir) if cache_dir else out_dir / "cache", config.preprocessing, spec.classes)
    if not ranks.is_main:
        ranks.barrier()  # rank 0 fills the cache; the others then read it
    labelled, unlabelled = prepare_training_data(
        spec, cache, include_labelled_as_unlabelled=include_labelled_as_unlabelled, cancel=cancel,
        progress=lambda done, total, case: reporter.progress("prepare", done, total, case=case),
    )
    # the val cases' original images and labels, read once: validation scores as the fine-tune gate does
    val_cases = [read_scored_case(case) for case in spec.labelled("val")] if ranks.is_main else []
    if ranks.is_main:
        ranks.barrier()
    reporter.progress("prepare", 1, 1)
    if not unlabelled and not supervised_only:
        reporter.log("no unlabelled training case: training supervised only", "warning")
        supervised_only = True

    # ---- model, teacher, optimiser ----------------------------------------------------------
    torch.manual_seed(seed)
    rng, generator = _random_streams(seed, ranks.rank)
    student = build_model(config, encoder_weights=None if resume or initial_model is not None else encoder_weights)
    if initial_model is not None:
        _load_initial_weights(student, Path(initial_model))
    student = student.to(dev)
    ranks.broadcast_module(student)
    teacher = make_teacher(student)
    if optimiser == "adamw":
        opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    step = SemiSupervisedStep(student, teacher, opt, config, autocast_dtype=PRECISION_DTYPES[precision], distributed=ranks,
                              foundation=foundation_model, **(step_options or {}))
    sampler = SliceSampler(labelled, unlabelled, crop_size=crop_size, size_multiple=config.size_multiple, rng=rng,
                           context_slices=config.preprocessing.context_slices, foreground_fraction=foreground_fraction,
                           shard=(ranks.rank, ranks.world_size))

    iteration, best_dice, best_iteration, elapsed_before = 0, -1.0, None, 0.0
    if resume:
        state = load_checkpoint(out_dir, student=student, teacher=teacher, optimiser=opt, rng=rng, generator=generator)
        iteration = state.iteration
        best_dice = state.extra.get("best_dice", -1.0)
        best_iteration = state.extra.get("best_iteration")
        elapsed_before = state.extra.get("elapsed_s", 0.0)
        step.iteration = iteration
        if ranks.rank:
            rng, generator = _random_streams(seed, ranks.rank, iteration)
            sampler.rng = rng
        reporter.log(f"resumed at iteration {iteration}")
        if (out_dir / "run.json").is_file():  # where the weights came from is the run's, not this command's
            for key in ("encoder_weights", "foundation_weights"):
                settings[key] = json.loads((out_dir / "run.json").read_text(encoding="utf-8")).get(key, settings[key])
    elif ranks.is_main:
        write_json_atomic(out_dir / "run.json", settings)

    started = time.monotonic()
    budget_s = minutes * 60.0 if minutes is not None else None
    last_val: float | None = None
    kernel_width: float | None = None  # QPM's effective replacement candidates over the codes in use
    validating_s = 0.0  # this process's time spent validating, for validation_share

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - started

    def checkpoint() -> None:
        if not ranks.is_main:
            return
        save_checkpoint(out_dir, student=student, teacher=teacher, optimiser=opt, iteration=iteration, rng=rng,
                        generator=generator, extra={"best_dice": best_dice, "best_iteration": best_iteration, "elapsed_s": elapsed()})

    def training_info() -> dict:
        info = {k: v for k, v in settings.items() if k != "config"} | {"iterations_done": iteration, "device": str(dev),
                                                                        "training_minutes": round(elapsed() / 60, 1)}
        return info | ({"qpm_effective_candidates": round(kernel_width, 2)} if kernel_width is not None else {})

    def step_decision() -> tuple[bool, float]:
        """(stop?, elapsed s), the same on every rank; raises Cancelled on every rank together."""
        now = elapsed()
        stop = (iterations is not None and iteration >= iterations) or (budget_s is not None and now >= budget_s)
        if not ranks.enabled:
            if not stop:
                cancel.check()
            return stop, now
        requested = getattr(cancel, "requested", False)
        requested = requested() if callable(requested) else bool(requested)
        stop, cancelled, now = ranks.agree(stop, requested, now, dev)
        if cancelled and not stop:
            raise Cancelled("cancelled")
        return stop, now

    def validate_and_keep_best() -> None:
        """Score the EMA teacher on the val split; save it as best/ when it beats the best so far."""
        nonlocal last_val, best_dice, best_iteration, validating_s
        validation_started = time.monotonic()
        # under torchrun a cancel waits for the next agreed decision: rank 0 alone must not stop mid-way
        scores = validate(teacher, val_cases, dev, cancel=None if ranks.enabled else cancel)
        last_val = scores["mean_dice"]
        reporter.metric(stage="validate", iteration=iteration, mean_dice=last_val, per_case=scores["per_case"])
        if last_val > best_dice:
            best_dice, best_iteration = last_val, iteration
            save_model(teacher, out_dir / "best", training=training_info(),
                       metrics={"val_mean_dice": last_val, "val_per_case": scores["per_case"], "iteration": iteration})
        validating_s += time.monotonic() - validation_started

    def validation_due() -> bool:
        return validation_share is None or validating_s <= validation_share * (time.monotonic() - started)

    total = iterations
    try:
        while True:
            stop, now = step_decision()
            if stop:
                break
            progress = iteration / iterations if iterations is not None else 0.0
            if budget_s is not None:
                progress = max(progress, now / budget_s)
            for group in opt.param_groups:
                group["lr"] = poly_lr(lr, progress)
            x_l, y_l = sampler.labelled_batch(batch_size)
            labels_only = supervised_only or progress < supervised_warmup  # the same on every rank: progress is agreed
            x_u = None if labels_only else sampler.unlabelled_batch(unlabelled_batch_size).to(dev)
            logs = step(x_l.to(dev), y_l.to(dev), x_u, generator=generator, supervised_only=labels_only)
            iteration += 1
            usage = student.quantizer.usage()
            if iteration == 1 or iteration % validate_every == 0:
                kernel_width = qpm_kernel_width(student)
            student.quantizer.reset_usage()
            if not all(math.isfinite(v) for v in logs.values()):
                raise RuntimeError(f"training diverged at iteration {iteration}: {logs}")
            extra = {k: round(v, 6) for k, v in logs.items()}
            if kernel_width is not None:
                extra["qpm_candidates"] = round(kernel_width, 2)
            extra.update(lr=opt.param_groups[0]["lr"], codebook_fraction=round(usage.fraction_used, 4),
                         codebook_perplexity=round(usage.perplexity, 3), val_dice=last_val)
            if total is None and budget_s is not None:
                extra["time_left_s"] = round(max(0.0, budget_s - elapsed()), 1)
            reporter.progress("train", iteration, total or 0, iteration=iteration, **extra)

            if iteration % validate_every == 0 and val_cases and validation_due():  # val_cases: rank 0 only
                validate_and_keep_best()
            if iteration % checkpoint_every == 0:
                checkpoint()
    except Cancelled:
        checkpoint()
        reporter.log(f"cancelled at iteration {iteration}; checkpoint written to {out_dir / 'checkpoint'} (use --resume)", "warning")
        raise

    # ---- the end: final validation, last and best teachers, checkpoint ---------------------
    replica_difference = ranks.max_weight_difference(teacher)
    if replica_difference != 0.0:  # a bug, but rank 0's model is still a model: save it and say so
        reporter.log(f"the ranks' teachers differ by up to {replica_difference:g} after training; rank 0's is saved", "warning")
    if val_cases and (best_iteration != iteration):
        validate_and_keep_best()
    last_metrics = {"iteration": iteration} | ({"val_mean_dice": last_val} if last_val is not None else {})
    if ranks.is_main:
        reference = ood_reference(teacher, unlabelled or labelled, config, dev)
        save_model(teacher, out_dir / "last", training=training_info(), metrics=last_metrics, ood_reference=reference)
        if not val_cases:
            reporter.log("no labelled val case: best/ is the last teacher (no validation)", "warning")
            save_model(teacher, out_dir / "best", training=training_info(), metrics=last_metrics, ood_reference=reference)
        else:
            _add_ood_reference(out_dir / "best", ood_reference(_load_weights(out_dir / "best", dev), unlabelled or labelled, config, dev))
    checkpoint()
    ranks.barrier()  # the others return only once rank 0's files are complete
    return {
        "iterations": iteration,
        "best_val_dice": best_dice if best_dice >= 0 else None,
        "best_iteration": best_iteration,
        "last_val_dice": last_val,
        "best": str(out_dir / "best"),
        "last": str(out_dir / "last"),
        "elapsed_s": round(elapsed(), 2),
        "device": str(dev),
        "precision": precision,
        "world_size": ranks.world_size,
        "rank": ranks.rank,
        "cases": {"labelled": len(labelled), "unlabelled": len(unlabelled), "val": len(val_cases)},
    }


def qpm_kernel_width(model) -> float | None:
    """Effective candidates (exp of the kernel's entropy) of the model's QPM over the codes its quantizer
    counted since the last reset; None for other perturbations or before any code was counted."""
    if not isinstance(model.perturbation, QuantizedPerturbation):
        return None
    used = model.quantizer.usage_counts.nonzero().squeeze(1)
    if used.numel() == 0:
        return None
    with torch.no_grad():
        return model.perturbation.effective_candidates(used, model.quantizer.codes())


def _load_initial_weights(student, folder: Path) -> None:
    from VQSegCore.model import load_model

    parent, _card = load_model(folder)
    try:
        student.load_state_dict(parent.state_dict(), strict=True)
    except RuntimeError as problem:
        raise InputError(f"the starting model {folder} does not fit this training configuration: {problem}",
                         "fine-tune with the starting model's own configuration") from problem


def _random_streams(seed: int, rank: int, iteration: int = 0) -> tuple[np.random.Generator, torch.Generator]:
    """The sampler's and the augmentation's random streams; rank 0 of a fresh run keeps plain `seed`."""
    if rank == 0 and iteration == 0:
        return np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    entropy = np.random.SeedSequence([seed, rank, iteration])
    return np.random.default_rng(entropy), torch.Generator().manual_seed(int(entropy.generate_state(1)[0]))


def _check_out_folder(out_dir: Path, settings: dict, resume: bool) -> None:
    run_file = out_dir / "run.json"
    if resume:
        if checkpoint_folder(out_dir) is None or not run_file.is_file():
            raise InputError(f"--resume: {out_dir} holds no training checkpoint", "start a new run without --resume")
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        keys = ("config", "batch_size", "unlabelled_batch_size", "crop_size", "lr", "seed", "supervised_only", "supervised_warmup",
                "optimiser", "iterations", "minutes", "precision", "foundation", "world_size", "step_options")
        # runs written before these settings existed had none
        previous.setdefault("supervised_warmup", 0.0)
        previous.setdefault("step_options", {})
        if "unlabeled_dice" in previous["step_options"]:  # the spelling of runs written before it was settled
            previous["step_options"]["unlabelled_dice"] = previous["step_options"].pop("unlabeled_dice")
        previous.setdefault("unlabelled_batch_size", previous.get("batch_size"))
        changed = [k for k in keys if previous.get(k) != json.loads(json.dumps(settings.get(k)))]
        if changed:
            raise InputError(f"--resume: the run in {out_dir} used different settings ({', '.join(changed)})",
                             "resume with the same settings, or start a new run in another folder")
        return
    if run_file.exists() or checkpoint_folder(out_dir) is not None or (out_dir / "last").exists():
        raise InputError(f"{out_dir} already holds a training run", "use --resume to continue it, or choose another --out folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is not a folder", "choose a folder for --out")
    out_dir.mkdir(parents=True, exist_ok=True)


OOD_REFERENCE_CASES = 24
OOD_REFERENCE_SLICES = 16


@torch.no_grad()
def ood_reference(model, cases: list[PreparedCase], config: VQSegConfig, device: torch.device) -> dict:
    """Code usage of (up to 24) training volumes: the card's OOD reference (VQSegCore.infer.ood).

    CT volumes are cut to the body's in-plane box first, as inference crops to the lungs or body:
    the reference must count the tokens inference will see, not the air around the patient. The
    engine runs in the model's own inference windows, so it counts tokens as inference counts them.
    """
    from VQSegCore.infer.engine import SliceEngine
    from VQSegCore.infer.ood import reference_from_volumes

    engine = SliceEngine(model, device, precision="fp32", channels_last=False)
    step = max(1, len(cases) // OOD_REFERENCE_CASES)
    context = config.preprocessing.context_slices
    volumes = []
    for case in cases[::step][:OOD_REFERENCE_CASES]:
        depth = case.image.shape[0]
        chosen = np.unique(np.linspace(0, depth - 1, min(depth, OOD_REFERENCE_SLICES)).round().astype(int))
        volume = np.asarray(case.image, dtype=np.float32)
        if context == 0:  # the chosen slices; 2.5D needs the neighbours, so all slices
            volume = volume[chosen]
        if config.preprocessing.modality == "ct":
            volume = volume[(slice(None), *_body_plane(volume, config))]
        volumes.append(engine.run(np.ascontiguousarray(volume), background=case.background).codes)
    return reference_from_volumes(volumes)


def _body_plane(volume: np.ndarray, config: VQSegConfig) -> tuple[slice, slice]:
    """In-plane box of voxels above -500 HU (normalised), over all slices; the whole plane if none."""
    from VQSegCore.infer.body import BODY_THRESHOLD_HU
    from VQSegCore.preprocess import intensity_transform

    threshold = intensity_transform(volume[:0], config.preprocessing).apply(np.array([BODY_THRESHOLD_HU]))[0]
    body = (volume > threshold).any(axis=0)
    if not body.any():
        return slice(None), slice(None)
    rows, cols = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _load_weights(folder: Path, device: torch.device):
    from VQSegCore.model import load_model

    model, _card = load_model(folder)
    return model.to(device)


def _add_ood_reference(folder: Path, reference: dict) -> None:
    card_path = folder / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["ood_reference"] = reference
    write_json_atomic(card_path, card)


def validate(model, cases: list[ScoredCase], device: torch.device, cancel=None) -> dict:
    """Mean Dice over the class table of `model` on each of `cases` (the val split), and their mean.

    Scored as the fine-tune gate scores (VQSegCore.infer.scoring): `segment_volume` on each case's
    original image, Dice on its own grid. The model is copied first: inference must not change the
    training teacher (eval mode, channels-last weights).
    """
    model = copy.deepcopy(model)
    per_case = {}
    for case in cases:
        if cancel is not None:
            cancel.check()
        per_case[case.id], _ = score_case(model, {}, case, device=device.type, cancel=cancel)
    return {"mean_dice": mean_dice(per_case), "per_case": per_case}
