"""Every subcommand is a module with `register(subparsers)` that sets `run(args, context) -> dict`."""

from VQSegCore.cli.commands import demo, evaluate, finetune, info, inspect, models, pool, segment, synth, train

COMMANDS = [info, inspect, synth, segment, evaluate, train, finetune, models, pool, demo]
