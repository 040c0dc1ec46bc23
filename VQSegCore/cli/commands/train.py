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


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a VQ-Seg model (semi-supervised) from a dataset spec",
        description="Train a VQ-Seg model from a dataset spec: labelled and unlabelled 'train' cases, the EMA teacher "
        "validated on the 'val' split. Writes best/, last/ and checkpoint/ into --out.",
    )
    parser.add_argument("--dataset", type=Path, required=True, metavar="SPEC", help="dataset spec JSON")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder (created if missing)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--iterations", type=int, metavar="N", help="number of training iterations")
    budget.add_argument("--minutes", type=float, metavar="M", help="time budget in minutes")
    parser.add_argument("--backbone", choices=("unet", "vit_dinov2"), default="unet")
    parser.add_argument("--perturbation", choices=("qpm", "dropout", "none"), default="qpm")
    parser.add_argument("--supervised-only", action="store_true", help="ignore unlabelled data (the supervised baseline)")
    parser.add_argument("--batch-size", type=int, default=8, help="labelled crops per step (default 8)")
    parser.add_argument("--unlabelled-batch-size", type=int, default=None, metavar="N",
                        help="unlabelled crops per step, each in two strong views (default: --batch-size)")
    parser.add_argument("--crop-size", type=int, default=128, help="square crop side in voxels (a multiple of the model's size multiple)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validate-every", type=int, default=100, metavar="N")
    parser.add_argument("--checkpoint-every", type=int, default=100, metavar="N")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--base-width", type=int, default=None, help="U-Net channels at full resolution")
    parser.add_argument("--depth", type=int, default=None, help="U-Net downsamplings")
    parser.add_argument("--codebook-size", type=int, default=None)
    parser.add_argument("--spacing", type=float, nargs=2, metavar=("X", "Y"), default=None, help="in-plane model spacing in mm (default 1 1)")
    parser.add_argument("--context-slices", type=int, default=0, help="2.5D: neighbouring slices on each side")
    parser.add_argument("--optimiser", choices=("adamw", "sgd"), default="adamw")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="fp32, or mixed precision: bf16 autocast (GPU, or CPUs with native bf16), fp16 autocast with loss scaling (GPU)")
    parser.add_argument("--foundation", choices=("none", "dinov2", "astra", "random"), default="none",
                        help="frozen foundation model for the PFA loss (none: no PFA)")
    parser.add_argument("--encoder-weights", default=None, metavar="FILE|auto",
                        help="vit_dinov2 only: start the ViT from pretrained DINOv2 ViT-S/14 weights (a local .pth or .safetensors, "
                             "or 'auto' for one already in your torch.hub / Hugging Face cache; nothing is downloaded)")
    parser.add_argument("--foundation-weights", type=Path, default=None, metavar="FILE",
                        help="local weights of the foundation model (dinov2: a ViT-S/14 state dict; astra: optional)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    from VQSegCore.dataset_spec import DatasetSpec
    from VQSegCore.model.config import PreprocessingConfig, VQSegConfig
    from VQSegCore.output_guard import check_outputs
    from VQSegCore.train.loop import train

    if args.iterations is None and args.minutes is None:
        raise InputError("train needs --iterations N or --minutes M", "e.g. --iterations 2000")
    if args.encoder_weights is not None:  # checked before any data is prepared
        if args.backbone != "vit_dinov2":
            raise InputError("--encoder-weights starts the DINOv2 backbone; the U-Net trains from scratch", "add --backbone vit_dinov2")
        if args.encoder_weights != "auto" and not Path(args.encoder_weights).is_file():
            raise InputError(f"--encoder-weights {args.encoder_weights}: no such file", "give a local dinov2_vits14_pretrain.pth or 'auto'")
    spec = DatasetSpec.load(args.dataset)
    spec.require_labelled("train")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file, not a folder", "give a folder for --out")
    check_outputs([args.out])
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
        config = VQSegConfig(**options, preprocessing=PreprocessingConfig(**preprocessing))
    except (TypeError, ValueError) as problem:
        raise InputError(f"invalid model settings: {problem}", "check --backbone, --base-width, --depth, --spacing") from problem
    summary = train(
        spec, config, args.out,
        iterations=args.iterations, minutes=args.minutes, batch_size=args.batch_size,
        unlabelled_batch_size=args.unlabelled_batch_size, crop_size=args.crop_size, lr=args.lr, seed=args.seed,
        supervised_only=args.supervised_only, validate_every=args.validate_every,
        checkpoint_every=args.checkpoint_every, resume=args.resume, reporter=context.reporter, cancel=context.cancel,
        device=args.device, optimiser=args.optimiser, precision=args.precision, foundation=args.foundation,
        foundation_weights=args.foundation_weights, encoder_weights=args.encoder_weights,
    )
    return summary
