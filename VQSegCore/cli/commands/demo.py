"""`vqseg demo`: the whole loop on synthetic chest CT in a few minutes, in a folder of its own.

    vqseg demo [--out demo_out] [--minutes 2.5] [--unlabelled 4] [--model-dir DIR] [--lr LR] [--device auto]

Segments two synthetic test cases with the default model, adds three "corrected" cases (their
truth) and a few unlabelled ones to a demo pool, fine-tunes, segments again, prints a before/after
table and writes demo.png. The demo's model store and pool live under OUT/home, never in the
user's $VQSEG_HOME.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from VQSegCore.atomic import check_writable_folder
from VQSegCore.errors import InputError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="the whole loop on synthetic chest CT: segment, correct, pool, fine-tune, re-segment",
        description="Run segment → add to pool → fine-tune → segment on synthetic chest CTs with a central tumour and print "
        "Dice against the phantoms' truth before and after. Writes everything under --out (its own model store and pool).",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the demo's files (default demo_out)")
    parser.add_argument("--minutes", type=float, default=2.5, help="fine-tuning budget (default 2.5)")
    parser.add_argument("--unlabelled", type=int, default=4, help="uncorrected cases in the pool (default 4)")
    parser.add_argument("--model-dir", type=Path, default=None, help="start from this model folder (default: the shipped lung-lesion model)")
    parser.add_argument("--lr", type=float, default=None, help="fine-tuning peak learning rate (default: vqseg finetune's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    from VQSegCore.demo import DemoSettings, run_demo
    from VQSegCore.output_guard import check_outputs

    if not 0.2 <= args.minutes <= 60:
        raise InputError(f"--minutes {args.minutes}: give 0.2 to 60 minutes", "e.g. --minutes 2.5")
    if not 0 <= args.unlabelled <= 20:
        raise InputError(f"--unlabelled {args.unlabelled}: give 0 to 20", "e.g. --unlabelled 4")
    if args.lr is not None and not 0 < args.lr < 1:
        raise InputError(f"--lr must be in (0, 1), got {args.lr}", "e.g. --lr 1e-4")
    check_outputs([args.out])
    if (args.out / "home").exists():
        raise InputError(f"{args.out} already holds a demo", "remove it or give another --out")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise InputError(f"cannot create {args.out}: {problem.strerror}", "give a writable --out folder") from problem
    check_writable_folder(args.out / "demo.png")
    settings = DemoSettings(out=args.out, minutes=args.minutes, unlabelled=args.unlabelled, device=args.device, base_model=args.model_dir,
                            lr=args.lr)
    result = run_demo(settings, context.reporter, context.cancel)
    context.reporter.log(_table(result))
    return result


def _table(result: dict) -> str:
    lines = ["", f"{'test case':<16} {'Dice before':>12} {'Dice after':>11}"]
    lines += [f"{row['case']:<16} {row['dice_before']:>12.3f} {row['dice_after']:>11.3f}" for row in result["test_cases"]]
    lines.append(f"{'mean':<16} {result['mean_dice_before']:>12.3f} {result['mean_dice_after']:>11.3f}")
    verdict = "promoted" if result["promoted"] else "kept as a candidate"
    lines.append(f"fine-tuned {result['model']} {result['base_version']} → {result['new_version']} ({verdict}: {result['gate']}) "
                 f"in {result['finetune_s']:.0f} s, {result['finetune_iterations']} iterations; figure: {result['figure']}")
    return "\n".join(lines)
