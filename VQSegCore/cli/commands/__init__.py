"""Every subcommand is a module with `register(subparsers)` that sets `run(args, context) -> dict`."""

from VQSegCore.cli.commands import evaluate, info, inspect, segment, synth, train

COMMANDS = [info, inspect, synth, segment, evaluate, train]
