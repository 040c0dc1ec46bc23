"""The command framework: parse arguments, pick a reporter, run a command, map outcomes to exit codes.

Exit codes (docs/architecture.md §3.1): 0 success; 2 bad input or arguments; 3 cancelled; 1 a bug.
In `--events` mode stdout carries only events: anything else written to stdout — by Python code
or by a C library — is redirected to stderr for the duration of the command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Iterator

from VQSegCore import __version__
from VQSegCore.cancel import CancelToken, sigterm_cancels
from VQSegCore.cli.reporting import EventReporter, HumanReporter, Reporter, WorkerReporter
from VQSegCore.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_CANCELLED, EXIT_OK, Cancelled, InputError


@dataclass
class RunContext:
    """What a command gets besides its arguments."""

    reporter: Reporter
    cancel: CancelToken


class _Parser(argparse.ArgumentParser):
    """Argument errors become InputError, so they are reported like any other bad input."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # '--events' is pre-scanned literally; no abbreviations
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}", f"run '{self.prog} --help' for usage")


def _common_options(parser: argparse.ArgumentParser, suppress_defaults: bool) -> None:
    default = argparse.SUPPRESS if suppress_defaults else None
    parser.add_argument("--events", action="store_true", default=argparse.SUPPRESS if suppress_defaults else False,
                        help="write progress and results as JSON lines on stdout (for programs)")
    parser.add_argument("--cancel-file", metavar="PATH", default=default,
                        help="stop cleanly (exit 3) as soon as this file exists")


def build_parser(commands: list) -> argparse.ArgumentParser:
    parser = _Parser(prog="vqseg", description="VQ-Seg lung tumour segmentation: segment, collect corrections, fine-tune.")
    parser.add_argument("--version", action="version", version=f"vqseg {__version__}")
    _common_options(parser, suppress_defaults=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in commands:
        _common_options_everywhere(command.register(subparsers))
    return parser


def _common_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """--events and --cancel-file on a command and on each of its actions (`vqseg pool add ...`)."""
    _common_options(parser, suppress_defaults=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _common_options_everywhere(sub)


def run_cli(argv: list[str] | None, commands: list) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_events = "--events" in argv
    rank = _torchrun_rank()
    with _stdout_reserved_for_events(wants_events) as event_stream:
        reporter: Reporter
        if rank:  # torchrun: rank 0 alone speaks for the job
            reporter = WorkerReporter(rank)
        else:
            reporter = EventReporter(event_stream) if wants_events else HumanReporter()
        try:
            return _run(argv, commands, reporter)
        finally:
            reporter.close()


def _run(argv: list[str], commands: list, reporter: Reporter) -> int:
    try:
        parser = build_parser(commands)
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help(sys.stderr)
            raise InputError("no command given", "run 'vqseg --help' to see the commands")
        cancel = CancelToken(args.cancel_file)
        with sigterm_cancels(cancel):
            cancel.check()
            values = args.run(args, RunContext(reporter, cancel))
        reporter.result(**(values or {}))
        return EXIT_OK
    except InputError as problem:
        reporter.error(problem.message, problem.hint, EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        reporter.error(
            "cancelled; no output was left half-written",
            "run the command again; commands with --resume continue from their last checkpoint",
            EXIT_CANCELLED,
        )
        return EXIT_CANCELLED
    except Exception as bug:  # noqa: BLE001 - the last line of defence must catch everything
        details = traceback.format_exc()
        sys.stderr.write(details)
        reporter.log(details, "error")
        reporter.error(f"internal error: {type(bug).__name__}: {bug}", "this is a bug in VQSeg; please report it with the log above", EXIT_BUG)
        return EXIT_BUG


def _torchrun_rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


@contextlib.contextmanager
def _stdout_reserved_for_events(active: bool) -> Iterator[io.TextIOBase]:
    """Yield a stream on the real stdout, and point fd 1 and sys.stdout at stderr meanwhile."""
    if not active:
        yield sys.stdout
        return
    sys.stdout.flush()
    try:
        saved_fd = os.dup(1)
    except OSError:  # no usable fd 1 (e.g. an embedded interpreter): fall back to the Python stream
        yield sys.stdout
        return
    events_stream = os.fdopen(os.dup(saved_fd), "w", encoding="utf-8", buffering=1)
    original_stdout = sys.stdout
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield events_stream
    finally:
        events_stream.flush()
        sys.stdout = original_stdout
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        events_stream.close()
