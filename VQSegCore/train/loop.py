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
from VQSegCore.cancel import NEVER_CANCELLED
from VQSegCore.compute import PRECISION_DTYPES, wants_cuda
from VQSegCore.errors import Cancelled, InputError
from VQSegCore.events import SILENT
from VQSegCore.infer.ood import ood_reference
from VQSegCore.infer.scoring import ScoredCase, mean_dice, read_scored_case, score_case
from VQSegCore.model import VQSegConfig, build_model, save_model
from VQSegCore.model.foundation import build_foundation
from VQSegCore.model.qpm import QuantizedPerturbation
from VQSegCore.train.checkpoint import checkpoint_folder, load_checkpoint, save_checkpoint
from VQSegCore.train.data import CaseCache, SliceSampler, prepare_training_data
from VQSegCore.train.distributed import Distributed
from VQSegCore.train.ema import make_teacher
from VQSegCore.train.settings import RESUME_KEYS, TRAINING, TrainingSettings, legacy_record
from VQSegCore.train.step import SemiSupervisedStep

POLY_POWER = 0.9


def poly_lr(base: float, progress: float) -> float:
    return base * max(0.0, 1.0 - progress) ** POLY_POWER


def train(spec, config: VQSegConfig, out_dir, settings: TrainingSettings | None = None, *, resume: bool = False, reporter=None,
          cancel=None, device: str = "cpu", cache_dir=None, distributed: Distributed | None = None, **changes) -> dict:
    """Train and return a summary dict (iterations done, best val Dice, folders written).

    `settings`: every training setting (VQSegCore.train.settings; default the TRAINING preset), with
    `changes` applied: `train(spec, config, out, iterations=500, crop_size=96)`. The settings are
    checked before anything is written.
    `resume`: continue the run in `out_dir` from its checkpoint; its recorded settings must agree.
    `distributed`: the torchrun ranks (default: read from the environment; one process without torchrun).
    """
    settings = (settings or TRAINING).replace(**changes).check()
    ranks = distributed or Distributed.from_environment()
    if settings.precision == "fp16" and not wants_cuda(device):
        raise InputError("fp16 mixed precision needs a CUDA device", "use --precision bf16 on a CPU, or fp32")
    with ranks.joined(device) as dev:
        run = TrainingRun(spec, config, Path(out_dir), settings, dev, ranks, resume=resume, cache_dir=cache_dir,
                          reporter=(reporter or SILENT) if ranks.is_main else SILENT, cancel=cancel or NEVER_CANCELLED)
        return run.run()


class TrainingRun:
    """One run of the loop: its state is these fields, its steps the methods below, in the order of `run`."""

    def __init__(self, spec, config: VQSegConfig, out_dir: Path, settings: TrainingSettings, dev: torch.device, ranks: Distributed,
                 *, resume: bool, cache_dir, reporter, cancel) -> None:
        self.spec, self.out_dir, self.settings, self.dev, self.ranks = spec, out_dir, settings, dev, ranks
        self.resume, self.cache_dir, self.reporter, self.cancel = resume, cache_dir, reporter, cancel
        self.supervised_only = settings.supervised_only
        self.config, self.foundation_model = self._resolved_config(config)
        self.record = {"config": self.config.to_dict(), **settings.record(), "world_size": ranks.world_size,
                       "dataset": str(spec.path) if spec.path else None}
        self.iteration, self.best_dice, self.best_iteration, self.elapsed_before = 0, -1.0, None, 0.0
        self.last_val: float | None = None
        self.kernel_width: float | None = None  # QPM's effective replacement candidates over the codes in use
        self.validating_s = 0.0  # this process's time spent validating, for the validation share

    # ---- set-up ------------------------------------------------------------------------------
    def _resolved_config(self, config: VQSegConfig):
        settings = self.settings
        config = config.resolved()
        # A new model infers at its training field of view. A fine-tuned one keeps its parent's, whatever it
        # is: its parent was validated and chosen that way (the shipped lung model runs on whole slices).
        crop = settings.crop_size
        if settings.initial_model is None and not config.inference_window and crop > 0 and crop % config.size_multiple == 0:
            config = dataclasses.replace(config, inference_window=crop)
        if not config.classes.values == self.spec.classes.values:
            config = dataclasses.replace(config, classes=self.spec.classes)
        foundation_model = None
        if settings.foundation != "none":
            foundation_model = build_foundation(settings.foundation, in_channels=config.preprocessing.in_channels,
                                                weights=settings.foundation_weights, hu_window=config.preprocessing.hu_window).to(self.dev)
            config = dataclasses.replace(config, pfa_model=settings.foundation, pfa_feature_dim=foundation_model.feature_dim)
        return config, foundation_model

    def _check_folder(self) -> None:
        problem = None
        if self.ranks.is_main:
            try:
                _check_out_folder(self.out_dir, self.record, self.resume)
            except InputError as error:
                problem = error
        if self.ranks.any(problem is not None, self.dev):  # every rank stops with exit 2, none waits for the others
            raise problem or InputError(f"rank 0 refused the run folder {self.out_dir}", "see rank 0's message")

    def _prepare_data(self) -> None:
        """The training cases into the cache, the val cases read once (the test split is never read)."""
        ranks, reporter = self.ranks, self.reporter
        cache = CaseCache(Path(self.cache_dir) if self.cache_dir else self.out_dir / "cache", self.config.preprocessing, self.spec.classes)
        if not ranks.is_main:
            ranks.barrier()  # rank 0 fills the cache; the others then read it
        self.labelled, self.unlabelled = prepare_training_data(
            self.spec, cache, include_labelled_as_unlabelled=self.settings.include_labelled_as_unlabelled, cancel=self.cancel,
            progress=lambda done, total, case: reporter.progress("prepare", done, total, case=case),
        )
        # the val cases' original images and labels: validation scores as the fine-tune gate does
        self.val_cases = [read_scored_case(case) for case in self.spec.labelled("val")] if ranks.is_main else []
        if ranks.is_main:
            ranks.barrier()
        reporter.progress("prepare", 1, 1)
        if not self.unlabelled and not self.supervised_only:
            reporter.log("no unlabelled training case: training supervised only", "warning")
            self.supervised_only = True

    def _build(self) -> None:
        """Student, EMA teacher, optimiser, step and sampler; from a checkpoint when resuming."""
        settings, ranks = self.settings, self.ranks
        torch.manual_seed(settings.seed)
        self.rng, self.generator = _random_streams(settings.seed, ranks.rank)
        starting = self.resume or settings.initial_model is not None
        student = build_model(self.config, encoder_weights=None if starting else settings.encoder_weights)
        if settings.initial_model is not None:
            _load_initial_weights(student, Path(settings.initial_model))
        self.student = student.to(self.dev)
        ranks.broadcast_module(self.student)
        self.teacher = make_teacher(self.student)
        if settings.optimiser == "adamw":
            self.opt = torch.optim.AdamW(self.student.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        else:
            self.opt = torch.optim.SGD(self.student.parameters(), lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay)
        self.step = SemiSupervisedStep(self.student, self.teacher, self.opt, self.config, autocast_dtype=PRECISION_DTYPES[settings.precision],
                                       distributed=ranks, foundation=self.foundation_model, **settings.step_keywords)
        self.sampler = SliceSampler(self.labelled, self.unlabelled, crop_size=settings.crop_size, size_multiple=self.config.size_multiple,
                                    rng=self.rng, context_slices=self.config.preprocessing.context_slices,
                                    foreground_fraction=settings.foreground_fraction, shard=(ranks.rank, ranks.world_size))
        if self.resume:
            self._restore()
        elif ranks.is_main:
            write_json_atomic(self.out_dir / "run.json", self.record)

    def _restore(self) -> None:
        state = load_checkpoint(self.out_dir, student=self.student, teacher=self.teacher, optimiser=self.opt, rng=self.rng,
                                generator=self.generator)
        self.iteration = state.iteration
        self.best_dice = state.extra.get("best_dice", -1.0)
        self.best_iteration = state.extra.get("best_iteration")
        self.elapsed_before = state.extra.get("elapsed_s", 0.0)
        self.step.iteration = self.iteration
        if self.ranks.rank:
            self.rng, self.generator = _random_streams(self.settings.seed, self.ranks.rank, self.iteration)
            self.sampler.rng = self.rng
        self.reporter.log(f"resumed at iteration {self.iteration}")
        if (self.out_dir / "run.json").is_file():  # where the weights came from is the run's, not this command's
            recorded = json.loads((self.out_dir / "run.json").read_text(encoding="utf-8"))
            for key in ("encoder_weights", "foundation_weights"):
                self.record[key] = recorded.get(key, self.record[key])

    # ---- the loop ----------------------------------------------------------------------------
    def run(self) -> dict:
        self._check_folder()
        self._prepare_data()
        self._build()
        self.started = time.monotonic()
        try:
            while True:
                stop, now = self._step_decision()
                if stop:
                    break
                self._train_step(now)
                if self.iteration % self.settings.validate_every == 0 and self.val_cases and self._validation_due():
                    self._validate_and_keep_best()  # val_cases: rank 0 only
                if self.iteration % self.settings.checkpoint_every == 0:
                    self._checkpoint()
        except Cancelled:
            self._checkpoint()
            self.reporter.log(f"cancelled at iteration {self.iteration}; checkpoint written to {self.out_dir / 'checkpoint'} "
                              "(use --resume)", "warning")
            raise
        return self._finish()

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def _budget_s(self) -> float | None:
        return self.settings.minutes * 60.0 if self.settings.minutes is not None else None

    def _step_decision(self) -> tuple[bool, float]:
        """(stop?, elapsed s), the same on every rank; raises Cancelled on every rank together."""
        now, iterations, budget_s = self._elapsed(), self.settings.iterations, self._budget_s()
        stop = (iterations is not None and self.iteration >= iterations) or (budget_s is not None and now >= budget_s)
        if not self.ranks.enabled:
            if not stop:
                self.cancel.check()
            return stop, now
        requested = getattr(self.cancel, "requested", False)
        requested = requested() if callable(requested) else bool(requested)
        stop, cancelled, now = self.ranks.agree(stop, requested, now, self.dev)
        if cancelled and not stop:
            raise Cancelled("cancelled")
        return stop, now

    def _train_step(self, now: float) -> None:
        settings, budget_s = self.settings, self._budget_s()
        progress = self.iteration / settings.iterations if settings.iterations is not None else 0.0
        if budget_s is not None:
            progress = max(progress, now / budget_s)
        for group in self.opt.param_groups:
            group["lr"] = poly_lr(settings.lr, progress)
        x_l, y_l = self.sampler.labelled_batch(settings.batch_size)
        labels_only = self.supervised_only or progress < settings.supervised_warmup  # the same on every rank: progress is agreed
        x_u = None if labels_only else self.sampler.unlabelled_batch(settings.unlabelled_batch).to(self.dev)
        logs = self.step(x_l.to(self.dev), y_l.to(self.dev), x_u, generator=self.generator, supervised_only=labels_only)
        self.iteration += 1
        usage = self.student.quantizer.usage()
        if self.iteration == 1 or self.iteration % settings.validate_every == 0:
            self.kernel_width = qpm_kernel_width(self.student)
        self.student.quantizer.reset_usage()
        if not all(math.isfinite(v) for v in logs.values()):
            raise RuntimeError(f"training diverged at iteration {self.iteration}: {logs}")
        extra = {k: round(v, 6) for k, v in logs.items()}
        if self.kernel_width is not None:
            extra["qpm_candidates"] = round(self.kernel_width, 2)
        extra.update(lr=self.opt.param_groups[0]["lr"], codebook_fraction=round(usage.fraction_used, 4),
                     codebook_perplexity=round(usage.perplexity, 3), val_dice=self.last_val)
        if settings.iterations is None and budget_s is not None:
            extra["time_left_s"] = round(max(0.0, budget_s - self._elapsed()), 1)
        self.reporter.progress("train", self.iteration, settings.iterations or 0, iteration=self.iteration, **extra)

    # ---- validation, checkpoints, saving -------------------------------------------------------
    def _validation_due(self) -> bool:
        share = self.settings.validation_share
        return share is None or self.validating_s <= share * (time.monotonic() - self.started)

    def _validate_and_keep_best(self) -> None:
        """Score the EMA teacher on the val split; save it as best/ when it beats the best so far."""
        validation_started = time.monotonic()
        # under torchrun a cancel waits for the next agreed decision: rank 0 alone must not stop mid-way
        scores = validate(self.teacher, self.val_cases, self.dev, cancel=None if self.ranks.enabled else self.cancel)
        self.last_val = scores["mean_dice"]
        self.reporter.metric(stage="validate", iteration=self.iteration, mean_dice=self.last_val, per_case=scores["per_case"])
        if self.last_val > self.best_dice:
            self.best_dice, self.best_iteration = self.last_val, self.iteration
            save_model(self.teacher, self.out_dir / "best", training=self._training_info(),
                       metrics={"val_mean_dice": self.last_val, "val_per_case": scores["per_case"], "iteration": self.iteration})
        self.validating_s += time.monotonic() - validation_started

    def _checkpoint(self) -> None:
        if not self.ranks.is_main:
            return
        save_checkpoint(self.out_dir, student=self.student, teacher=self.teacher, optimiser=self.opt, iteration=self.iteration,
                        rng=self.rng, generator=self.generator,
                        extra={"best_dice": self.best_dice, "best_iteration": self.best_iteration, "elapsed_s": self._elapsed()})

    def _training_info(self) -> dict:
        info = {k: v for k, v in self.record.items() if k != "config"} | {
            "iterations_done": self.iteration, "device": str(self.dev), "training_minutes": round(self._elapsed() / 60, 1)}
        return info | ({"qpm_effective_candidates": round(self.kernel_width, 2)} if self.kernel_width is not None else {})

    def _finish(self) -> dict:
        """The final validation, the last and best teachers with their OOD references, the checkpoint."""
        ranks, out_dir = self.ranks, self.out_dir
        replica_difference = ranks.max_weight_difference(self.teacher)
        if replica_difference != 0.0:  # a bug, but rank 0's model is still a model: save it and say so
            self.reporter.log(f"the ranks' teachers differ by up to {replica_difference:g} after training; rank 0's is saved", "warning")
        if self.val_cases and (self.best_iteration != self.iteration):
            self._validate_and_keep_best()
        last_metrics = {"iteration": self.iteration} | ({"val_mean_dice": self.last_val} if self.last_val is not None else {})
        if ranks.is_main:
            reference_cases = self.unlabelled or self.labelled
            reference = ood_reference(self.teacher, reference_cases, self.config, self.dev)
            save_model(self.teacher, out_dir / "last", training=self._training_info(), metrics=last_metrics, ood_reference=reference)
            if not self.val_cases:
                self.reporter.log("no labelled val case: best/ is the last teacher (no validation)", "warning")
                save_model(self.teacher, out_dir / "best", training=self._training_info(), metrics=last_metrics, ood_reference=reference)
            else:
                best = _load_weights(out_dir / "best", self.dev)
                _add_ood_reference(out_dir / "best", ood_reference(best, reference_cases, self.config, self.dev))
        self._checkpoint()
        ranks.barrier()  # the others return only once rank 0's files are complete
        return {
            "iterations": self.iteration,
            "best_val_dice": self.best_dice if self.best_dice >= 0 else None,
            "best_iteration": self.best_iteration,
            "last_val_dice": self.last_val,
            "best": str(out_dir / "best"),
            "last": str(out_dir / "last"),
            "elapsed_s": round(self._elapsed(), 2),
            "device": str(self.dev),
            "precision": self.settings.precision,
            "world_size": ranks.world_size,
            "rank": ranks.rank,
            "cases": {"labelled": len(self.labelled), "unlabelled": len(self.unlabelled), "val": len(self.val_cases)},
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


def _check_out_folder(out_dir: Path, record: dict, resume: bool) -> None:
    """A new run needs a folder without one; a resumed run needs its checkpoint and the same settings."""
    run_file = out_dir / "run.json"
    if resume:
        if checkpoint_folder(out_dir) is None or not run_file.is_file():
            raise InputError(f"--resume: {out_dir} holds no training checkpoint", "start a new run without --resume")
        previous = legacy_record(json.loads(run_file.read_text(encoding="utf-8")))
        current = json.loads(json.dumps(legacy_record(record)))
        changed = [k for k in ("config", *RESUME_KEYS, "world_size") if previous.get(k) != current.get(k)]
        if changed:
            raise InputError(f"--resume: the run in {out_dir} used different settings ({', '.join(changed)})",
                             "resume with the same settings, or start a new run in another folder")
        return
    if run_file.exists() or checkpoint_folder(out_dir) is not None or (out_dir / "last").exists():
        raise InputError(f"{out_dir} already holds a training run", "use --resume to continue it, or choose another --out folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is not a folder", "choose a folder for --out")
    out_dir.mkdir(parents=True, exist_ok=True)


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
        (cancel or NEVER_CANCELLED).check()
        per_case[case.id], _ = score_case(model, {}, case, device=device.type, cancel=cancel)
    return {"mean_dice": mean_dice(per_case), "per_case": per_case}
