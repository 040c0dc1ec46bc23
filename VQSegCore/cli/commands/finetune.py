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
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="time budget for training")
    budget.add_argument("--iterations", type=int, help="training iterations")
    parser.add_argument("--margin", type=float, default=0.01, help="largest held-out Dice loss that still promotes (default 0.01)")
    parser.add_argument("--supervised-only", action="store_true", help="ignore unlabelled cases (the baseline)")
    parser.add_argument("--supervised-warmup", type=float, default=None, metavar="FRACTION",
                        help="the first fraction of the budget learns from the labelled cases only, before the teacher's "
                        "pseudo-labels on the unlabelled ones are used (default 0.7; 0 = semi-supervised from the start)")
    parser.add_argument("--resume", action="store_true", help="continue the last unfinished fine-tune of this model")
    parser.add_argument("--from-scratch", action="store_true",
                        help="allow a --model name the store does not know: a new model trained from random weights")
    parser.add_argument("--skip-damaged", action="store_true",
                        help="fine-tune without the pool's damaged cases (named in a warning and the report) instead of stopping")
    parser.add_argument("--batch-size", type=int, default=8, help="labelled crops per step (default 8)")
    parser.add_argument("--unlabelled-batch-size", type=int, default=None, metavar="N",
                        help="unlabelled crops per step (default: half of --batch-size)")
    parser.add_argument("--unlabelled-dice", type=float, default=None, metavar="W",
                        help="weight of the pseudo-labels' Dice beside their cross-entropy (default 0: cross-entropy only, as the authors' code)")
    parser.add_argument("--strong-views", type=int, default=None, choices=(1, 2),
                        help="strong views of each unlabelled crop the student learns from (default 2, as the authors' code)")
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-4, a tenth of training from scratch)")
    parser.add_argument("--validate-every", type=int, default=50, metavar="N",
                        help="held-out Dice every N iterations (default 50), less often where it would take over 10%% of the time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    from VQSegCore.finetune import finetune
    from VQSegCore.pool import pool_folder
    from VQSegCore.models import DEFAULT_MODEL_NAME

    if args.iterations is None and args.minutes is None:
        raise InputError("finetune needs --minutes M or --iterations N", "e.g. --minutes 10")
    if not 0 <= args.margin < 1:
        raise InputError(f"--margin must be in [0, 1), got {args.margin}")
    if args.lr is not None and not 0 < args.lr < 1:
        raise InputError(f"--lr must be in (0, 1), got {args.lr}", "e.g. --lr 1e-4")
    return finetune(
        pool_folder(args.pool), model_name=args.model or DEFAULT_MODEL_NAME, iterations=args.iterations, minutes=args.minutes,
        margin=args.margin, supervised_only=args.supervised_only, seed=args.seed, device=args.device, batch_size=args.batch_size,
        crop_size=args.crop_size, validate_every=args.validate_every, resume=args.resume, skip_damaged=args.skip_damaged, from_scratch=args.from_scratch, reporter=context.reporter, cancel=context.cancel,
        **_given(lr=args.lr, supervised_warmup=args.supervised_warmup, unlabelled_batch_size=args.unlabelled_batch_size,
                 unlabelled_dice=args.unlabelled_dice, strong_views=args.strong_views),
    )


def _given(**options) -> dict:
    """The options the user set; the others keep finetune()'s defaults, defined there alone."""
    return {name: value for name, value in options.items() if value is not None}
