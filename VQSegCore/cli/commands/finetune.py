"""`vqseg finetune`: fine-tune the active model on a training pool; promote the result only if it does not regress.

    vqseg finetune --pool clinic [--model lung-lesion] (--minutes M | --iterations N) [--margin 0.01]
        [--supervised-only] [--resume] [--device auto|cpu|cuda] [--events] [--cancel-file F]

Under torchrun every rank trains and rank 0 alone reads the pool, writes the version and reports:
    torchrun --nproc_per_node 2 -m VQSegCore finetune --pool clinic --iterations 2000
--batch-size is per process. A killed fine-tune continues with the same command plus --resume.
"""

from __future__ import annotations

import argparse

from VQSegCore.errors import InputError
from VQSegCore.train.settings import FINETUNE_COMMAND, add_arguments, from_arguments


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune the active model on a training pool (semi-supervised), with a promotion gate",
        description="Train from the active version on the pool's labelled cases plus every unlabelled one, score parent and "
        "candidate on held-out labelled cases (n // 3 of n >= 3), and activate the candidate only if its Dice is at most "
        "--margin below the parent's. Otherwise it is kept as a candidate version with the reason.",
    )
    parser.add_argument("--pool", default=None, metavar="NAME_OR_PATH",
                        help="the training pool (a name under $VQSEG_HOME/pools or a folder; default $VQSEG_POOL)")
    parser.add_argument("--model", default=None, metavar="NAME", help="the model to fine-tune (default lung-lesion)")
    parser.add_argument("--margin", type=float, default=0.01, help="largest held-out Dice loss that still promotes (default 0.01)")
    parser.add_argument("--resume", action="store_true", help="continue the last unfinished fine-tune of this model")
    parser.add_argument("--from-scratch", action="store_true",
                        help="allow a --model name the store does not know: a new model trained from random weights")
    parser.add_argument("--skip-damaged", action="store_true",
                        help="fine-tune without the pool's damaged cases (named in a warning and the report) instead of stopping")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add_arguments(parser, FINETUNE_COMMAND)  # the training settings, with the fine-tuning preset's defaults
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    from VQSegCore.finetune import finetune
    from VQSegCore.pool import pool_folder
    from VQSegCore.models import DEFAULT_MODEL_NAME

    settings = from_arguments(args, FINETUNE_COMMAND)
    if not 0 <= args.margin < 1:
        raise InputError(f"--margin must be in [0, 1), got {args.margin}")
    return finetune(pool_folder(args.pool), settings, model_name=args.model or DEFAULT_MODEL_NAME, margin=args.margin,
                    device=args.device, resume=args.resume, skip_damaged=args.skip_damaged, from_scratch=args.from_scratch,
                    reporter=context.reporter, cancel=context.cancel)
