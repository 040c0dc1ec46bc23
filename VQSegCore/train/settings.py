"""Every setting of a training run in one frozen object: its default, its check, its flag and its record.

    settings = TrainingSettings(iterations=2000, crop_size=96)     # training from scratch
    settings = FINETUNE.replace(minutes=10)                         # fine-tuning: a preset of the same object

A new setting is one new field here. `vqseg train` and `vqseg finetune` add a flag for every field whose
metadata names the command (`add_arguments`, `from_arguments`), `check()` refuses bad values with the
flag's name, run.json and the card record it (`record()`), and a resumed run compares it
(`RESUME_KEYS`; docs/architecture.md §3.6).

On disk (run.json) the settings keep their flat layout; the two options of the semi-supervised step that
have flags, `unlabelled_dice` and `strong_views`, sit inside `step_options` with any others.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from VQSegCore.errors import InputError

TRAIN, FINETUNE_COMMAND = "train", "finetune"
BOTH = (TRAIN, FINETUNE_COMMAND)
NOT_RECORDED = ("validate_every", "checkpoint_every", "validation_share", "unlabelled_batch_share")
# The names of VQSegCore.compute.PRECISION_DTYPES, written here so that every command's start-up (which
# builds its flags from this module) does not import torch: `vqseg pool add` and `--help` never need it.
PRECISIONS = ("fp32", "bf16", "fp16")


def _setting(default, help="", *, commands=BOTH, metavar=None, choices=None, resume: bool = False, step: bool = False,
             factory=None):
    """A field with its flag's help (text, or a function of the preset), the commands that show it, whether a
    resume must repeat it, and whether it is a keyword of SemiSupervisedStep (recorded inside step_options)."""
    metadata = {"help": help, "commands": commands, "metavar": metavar, "choices": choices, "resume": resume, "step": step}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainingSettings:
    iterations: int | None = _setting(None, "training iterations", metavar="N", resume=True)
    minutes: float | None = _setting(None, "time budget in minutes", metavar="M", resume=True)
    batch_size: int = _setting(8, "labelled crops per step", metavar="N", resume=True)
    unlabelled_batch_size: int | None = _setting(
        None, lambda preset: "unlabelled crops per step, each in two strong views (default: "
        + ("--batch-size)" if preset.unlabelled_batch_share == 1 else
           "half of --batch-size)" if preset.unlabelled_batch_share == 0.5 else f"{preset.unlabelled_batch_share:g} x --batch-size)"),
        metavar="N", resume=True)
    # Unlabelled crops per labelled crop when --unlabelled-batch-size is not given (the authors' fine-tune: 0.5).
    unlabelled_batch_share: float = _setting(1.0, commands=())
    crop_size: int = _setting(128, "square crop side in voxels (a multiple of the model's size multiple)", metavar="N", resume=True)
    lr: float = _setting(1e-3, "peak learning rate (poly decay)", resume=True)
    seed: int = _setting(0, "random seed", resume=True)
    supervised_only: bool = _setting(False, "ignore unlabelled data (the supervised baseline)", resume=True)
    supervised_warmup: float = _setting(
        0.0, "the first fraction of the budget learns from the labelled cases only, before the teacher's pseudo-labels "
        "on the unlabelled ones are used (0 = semi-supervised from the start)", metavar="FRACTION", resume=True)
    optimiser: str = _setting("adamw", "optimiser", commands=(TRAIN,), choices=("adamw", "sgd"), resume=True)
    weight_decay: float = _setting(1e-4, "weight decay", commands=(TRAIN,), resume=True)
    foreground_fraction: float = _setting(
        0.5, "share of labelled crops centred on a foreground voxel", commands=(TRAIN,), metavar="FRACTION", resume=True)
    include_labelled_as_unlabelled: bool = _setting(True, commands=())
    precision: str = _setting(
        "fp32", "fp32, or mixed precision: bf16 autocast (GPU, or CPUs with native bf16), fp16 autocast with loss scaling (GPU)",
        commands=(TRAIN,), choices=PRECISIONS, resume=True)
    validate_every: int = _setting(
        100, lambda preset: "score the EMA teacher on the val cases every N iterations" + (
            f", less often where validation would take over {preset.validation_share:.0%} of the time; checkpoints follow it"
            if preset.validation_share else ""), metavar="N")
    # The most of the process's time validation may take (0-1); None: every validate_every, however long.
    validation_share: float | None = _setting(None, commands=())
    checkpoint_every: int = _setting(100, "write a resumable checkpoint every N iterations", commands=(TRAIN,), metavar="N")
    unlabelled_dice: float | None = _setting(
        None, "weight of the pseudo-labels' Dice beside their cross-entropy (0: cross-entropy only, as the authors' code)",
        metavar="W", step=True)
    strong_views: int | None = _setting(None, "strong views of each unlabelled crop the student learns from (the authors' code: 2)",
                                        choices=(1, 2), step=True)
    confidence_threshold: float | None = _setting(
        None, "teacher softmax confidence a pseudo-label needs (the authors' code: 0.95)", metavar="P", step=True)
    # Further keyword arguments of SemiSupervisedStep (benchmarks' variants): numbers and strings.
    step_options: dict = _setting(None, commands=(), factory=dict)
    foundation: str = _setting("none", "frozen foundation model for the PFA loss (none: no PFA)", commands=(TRAIN,),
                               choices=("none", "dinov2", "astra", "random"), resume=True)
    foundation_weights: str | None = _setting(
        None, "local weights of the foundation model (dinov2: a ViT-S/14 state dict; astra: optional)", commands=(TRAIN,),
        metavar="FILE")
    encoder_weights: str | None = _setting(
        None, "vit_dinov2 only: start the ViT from pretrained DINOv2 ViT-S/14 weights (a local .pth or .safetensors, or "
        "'auto' for one already in your torch.hub / Hugging Face cache; nothing is downloaded)", commands=(TRAIN,),
        metavar="FILE|auto")
    initial_model: str | None = _setting(
        None, "a model folder whose weights start the run (its configuration is the run's)", commands=(TRAIN,), metavar="DIR")

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_options", legacy_step_options(self.step_options or {}))

    # ---- derived values ------------------------------------------------------------------------
    @property
    def unlabelled_batch(self) -> int:
        if self.unlabelled_batch_size is not None:
            return self.unlabelled_batch_size
        return max(1, int(self.batch_size * self.unlabelled_batch_share))

    @property
    def step_keywords(self) -> dict:
        """SemiSupervisedStep's keyword arguments: step_options plus the step settings that were given."""
        given = {name: getattr(self, name) for name in STEP_FIELDS if getattr(self, name) is not None}
        return {**self.step_options, **given}

    def replace(self, **changes) -> "TrainingSettings":
        return dataclasses.replace(self, **changes)

    # ---- checks --------------------------------------------------------------------------------
    def check(self) -> "TrainingSettings":
        """Refuse bad values (InputError, naming the flag); return self."""
        if self.iterations is None and self.minutes is None:
            raise InputError("give a number of iterations or a time budget in minutes (--iterations N or --minutes M)",
                             "e.g. --iterations 2000 or --minutes 30")
        if self.iterations is not None and self.iterations < 1:
            raise InputError(f"--iterations must be >= 1, got {self.iterations}")
        if self.minutes is not None and self.minutes <= 0:
            raise InputError(f"--minutes must be > 0, got {self.minutes}")
        if self.batch_size < 1 or self.unlabelled_batch < 1 or self.validate_every < 1 or self.checkpoint_every < 1:
            raise InputError(f"batch sizes, --validate-every and --checkpoint-every must be >= 1, got batch sizes {self.batch_size} "
                             f"labelled and {self.unlabelled_batch} unlabelled")
        if not 0.0 < self.lr < 1.0:
            raise InputError(f"--lr must be in (0, 1), got {self.lr}", "e.g. --lr 1e-4")
        if self.optimiser not in ("adamw", "sgd"):
            raise InputError(f"--optimiser must be 'adamw' or 'sgd', got {self.optimiser!r}")
        if not 0.0 <= self.supervised_warmup < 1.0:
            raise InputError(f"--supervised-warmup (the supervised warm-up) must be a fraction in [0, 1), got {self.supervised_warmup}",
                             "e.g. --supervised-warmup 0.7")
        if self.validation_share is not None and not 0.0 < self.validation_share <= 1.0:
            raise InputError(f"the validation share must be a fraction in (0, 1], got {self.validation_share}")
        if not 0.0 <= self.foreground_fraction <= 1.0 or self.weight_decay < 0:
            raise InputError(f"--foreground-fraction must be in [0, 1] and --weight-decay >= 0, got {self.foreground_fraction} "
                             f"and {self.weight_decay}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if (self.unlabelled_dice is not None and not 0.0 <= self.unlabelled_dice <= 100.0) or self.strong_views not in (None, 1, 2):
            raise InputError(f"--unlabelled-dice must be in [0, 100] and --strong-views 1 or 2, got {self.unlabelled_dice} and "
                             f"{self.strong_views}", "e.g. --unlabelled-dice 1 --strong-views 1")
        if self.confidence_threshold is not None and not 0.0 < self.confidence_threshold < 1.0:
            raise InputError(f"--confidence-threshold must be in (0, 1), got {self.confidence_threshold}", "e.g. --confidence-threshold 0.95")
        if self.initial_model is not None and not Path(self.initial_model).is_dir():
            raise InputError(f"--initial-model {self.initial_model}: no such model folder", "give a folder holding card.json and weights")
        return self

    # ---- run.json ------------------------------------------------------------------------------
    def record(self) -> dict:
        """The settings as run.json and the card's training section hold them."""
        out: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            if item.name in NOT_RECORDED or item.name in STEP_FIELDS or item.name == "step_options":
                continue
            value = getattr(self, item.name)
            out[item.name] = str(value) if isinstance(value, Path) else value
        out["unlabelled_batch_size"] = self.unlabelled_batch
        if self.encoder_weights not in (None, "auto"):  # where the weights came from, wherever the run is resumed
            out["encoder_weights"] = str(Path(self.encoder_weights).resolve())
        if self.initial_model is not None:
            out["initial_model"] = str(Path(self.initial_model).resolve())
        out["step_options"] = dict(self.step_keywords)
        return out


STEP_FIELDS = tuple(item.name for item in dataclasses.fields(TrainingSettings) if item.metadata["step"])
# Resumed runs must repeat these (plus the model config and the number of processes, the loop's own).
RESUME_KEYS = tuple(item.name for item in dataclasses.fields(TrainingSettings) if item.metadata["resume"]) + ("step_options",)


def legacy_step_options(options: dict) -> dict:
    """step_options as written now: runs before the spelling was settled wrote `unlabeled_dice`."""
    options = dict(options)
    if "unlabeled_dice" in options:
        options["unlabelled_dice"] = options.pop("unlabeled_dice")
    return options


def legacy_record(record: dict) -> dict:
    """A run.json of any version with the keys of this one: older runs lacked later settings."""
    record = dict(record)
    record.setdefault("supervised_warmup", 0.0)
    record["step_options"] = legacy_step_options(record.get("step_options") or {})
    record.setdefault("unlabelled_batch_size", record.get("batch_size"))
    for name in ("weight_decay", "foreground_fraction"):
        record.setdefault(name, getattr(TRAINING, name))
    return record


# ---- presets -----------------------------------------------------------------------------------
TRAINING = TrainingSettings()
# Fine-tuning a trained model on a pool. Each value was chosen by measurement (docs/benchmarks.md, Fine-tuning):
# - lr 1e-4, a tenth of training from scratch: a fresh AdamW at 1e-3 costs a trained model what it knew;
# - labelled cases only for the first 70% of the budget: on a new kind of image the parent's pseudo-labels
#   are confident and wrong, and learning from them at once sets the student back;
# - the authors' unlabelled loss (CE of confident pseudo-labels, two strong views of half as many crops);
#   adding their Dice with one view was no better beyond the run-to-run spread;
# - validation on the held-out cases takes at most 10% of the time, as a growing pool holds out more.
FINETUNE = TrainingSettings(crop_size=96, lr=1e-4, supervised_warmup=0.7, unlabelled_batch_share=0.5, validate_every=50,
                            checkpoint_every=50, validation_share=0.1, unlabelled_dice=0.0, strong_views=2)
PRESETS = {TRAIN: TRAINING, FINETUNE_COMMAND: FINETUNE}


# ---- command-line flags --------------------------------------------------------------------------
def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """One flag per setting the command shows; defaults stay None so that `from_arguments` knows what was given."""
    preset = PRESETS[command]
    budget = parser.add_mutually_exclusive_group()
    for item in dataclasses.fields(TrainingSettings):
        if command not in item.metadata["commands"]:
            continue
        default = getattr(preset, item.name)
        help_text = item.metadata["help"]
        help_text = help_text(preset) if callable(help_text) else help_text
        target = budget if item.name in ("iterations", "minutes") else parser
        if item.type in ("bool", bool):
            target.add_argument(flag(item.name), dest=item.name, action="store_true", default=None, help=help_text)
            continue
        help_text += "" if default is None else f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
        kind = _argument_type(item)
        target.add_argument(flag(item.name), dest=item.name, type=kind, default=None, metavar=item.metadata["metavar"],
                            choices=item.metadata["choices"], help=help_text.replace("%", "%%"))


def from_arguments(args: argparse.Namespace, command: str) -> TrainingSettings:
    """The command's preset with the flags the user gave, checked (InputError naming the flag)."""
    preset = PRESETS[command]
    given = {item.name: getattr(args, item.name) for item in dataclasses.fields(TrainingSettings)
             if command in item.metadata["commands"] and getattr(args, item.name, None) is not None}
    settings = preset.replace(**given)
    if settings.iterations is None and settings.minutes is None:
        raise InputError(f"{command} needs --iterations N or --minutes M", "e.g. --iterations 2000 or --minutes 10")
    return settings.check()


def _argument_type(item):
    kinds = {"int | None": int, "int": int, "float | None": float, "float": float, "str": str, "str | None": str}
    return kinds[item.type if isinstance(item.type, str) else item.type.__name__]
