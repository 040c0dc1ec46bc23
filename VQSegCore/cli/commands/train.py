"""`vqseg train`: semi-supervised VQ-Seg training from a dataset spec.

    vqseg train --dataset spec.json --out DIR (--iterations N | --minutes M) [options]

Writes DIR/best and DIR/last (model folders for `load_model`), DIR/checkpoint (resume with
--resume), DIR/run.json and DIR/cache. Validation uses the spec's `val` split only.
A cancel (cancel file, SIGTERM) writes a checkpoint first, then exits 3.

Under torchrun the same command trains data-parallel (one process per GPU, or gloo on CPUs):
    torchrun --nproc_per_node 2 -m VQSegCore train --dataset spec.json --out DIR --iterations N
--batch-size is per process; only rank 0 reports and writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from VQSegCore.errors import InputError
from VQSegCore.train.settings import TRAIN, add_arguments, flag, from_arguments


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a VQ-Seg model (semi-supervised) from a dataset spec",
        description="Train a VQ-Seg model from a dataset spec: labelled and unlabelled 'train' cases, the EMA teacher "
        "validated on the 'val' split. Writes best/, last/ and checkpoint/ into --out.",
    )
    parser.add_argument("--dataset", type=Path, required=True, metavar="SPEC", help="dataset spec JSON")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder (created if missing)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--backbone", choices=("unet", "vit_dinov2"), default="unet")
    parser.add_argument("--perturbation", choices=("qpm", "dropout", "none"), default="qpm")
    parser.add_argument("--base-width", type=int, default=None, help="U-Net channels at full resolution")
    parser.add_argument("--depth", type=int, default=None, help="U-Net downsamplings")
    parser.add_argument("--codebook-size", type=int, default=None)
    parser.add_argument("--spacing", type=float, nargs=2, metavar=("X", "Y"), default=None, help="in-plane model spacing in mm (default 1 1)")
    parser.add_argument("--context-slices", type=int, default=0, help="2.5D: neighbouring slices on each side")
    add_arguments(parser, TRAIN)  # the training settings: one flag per field of TrainingSettings
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    from VQSegCore.dataset_spec import DatasetSpec
    from VQSegCore.model.config import VQSegConfig
    from VQSegCore.model.persistence import read_card
    from VQSegCore.output_guard import check_outputs
    from VQSegCore.train.loop import train

    settings = from_arguments(args, TRAIN)
    if settings.encoder_weights is not None:  # checked before any data is prepared
        if args.backbone != "vit_dinov2":
            raise InputError("--encoder-weights starts the DINOv2 backbone; the U-Net trains from scratch", "add --backbone vit_dinov2")
        if settings.encoder_weights != "auto" and not Path(settings.encoder_weights).is_file():
            raise InputError(f"--encoder-weights {settings.encoder_weights}: no such file", "give a local dinov2_vits14_pretrain.pth or 'auto'")
    spec = DatasetSpec.load(args.dataset)
    spec.require_labelled("train")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file, not a folder", "give a folder for --out")
    check_outputs([args.out])
    if settings.initial_model is not None:  # the starting model's network: model flags would contradict it
        given = [name for name in ("base_width", "depth", "codebook_size", "spacing", "encoder_weights")
                 if getattr(args, name) is not None]
        if given:
            raise InputError(f"--initial-model sets the network; {', '.join(flag(n) for n in given)} cannot change it",
                             "leave out the model flags, or start a new model without --initial-model")
        config = VQSegConfig.from_dict(read_card(Path(settings.initial_model))["config"])
    else:
        config = _model_config(args, spec)
    return train(spec, config, args.out, settings, resume=args.resume, reporter=context.reporter, cancel=context.cancel,
                 device=args.device)


def _model_config(args: argparse.Namespace, spec):
    from VQSegCore.model.config import PreprocessingConfig, VQSegConfig

    options = {"backbone": args.backbone, "perturbation": args.perturbation, "classes": spec.classes}
    if args.base_width is not None:
        options["unet_base_width"] = args.base_width
    if args.depth is not None:
        options["unet_depth"] = args.depth
    if args.codebook_size is not None:
        options["codebook_size"] = args.codebook_size
    preprocessing = {"context_slices": args.context_slices}
    if args.spacing is not None:
        preprocessing["spacing_mm"] = tuple(args.spacing)
    try:
        return VQSegConfig(**options, preprocessing=PreprocessingConfig(**preprocessing))
    except (TypeError, ValueError) as problem:
        raise InputError(f"invalid model settings: {problem}", "check --backbone, --base-width, --depth, --spacing") from problem
