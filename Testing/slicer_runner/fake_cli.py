"""A stand-in for `python -m VQSegCore`: the conftest copies it to <tmp>/VQSegCore/__main__.py.

It speaks the CLI's protocol (global --events and --cancel-file before the command, JSON
lines on stdout, exit 0/2/3/1) with commands that exercise the runner:
  count N SLEEP     N progress events SLEEP seconds apart, honouring the cancel file (exit 3)
  stubborn PIDFILE  start a grandchild, write its pid, then ignore the cancel file and SIGTERM
  polite PIDFILE    like stubborn, but SIGTERM ends it (the default action)
  orphan PIDFILE    start a grandchild that keeps the pipes open, then succeed at once
  flood LINES       much output on both pipes, an event split across two writes, no final newline
  crash             an uncaught exception (traceback, exit 1)
"""

import json
import os
import signal
import subprocess
import sys
import time


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def cancelled(cancelFile):
    return cancelFile is not None and os.path.exists(cancelFile)


def count(cancelFile, total, pause):
    for done in range(1, total + 1):
        if cancelled(cancelFile):
            emit(event="error", message="cancelled", hint="", exit_code=3)
            return 3
        time.sleep(pause)
        emit(event="progress", stage="segment", done=done, total=total, eta_s=(total - done) * pause)
    emit(event="result", outputs=[], counted=total)
    return 0


def holdOn(pidFile, ignoreTerm):
    if ignoreTerm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sleeper = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(120)\n"
    # The grandchild inherits stdout/stderr, so it also keeps the runner's pipes open.
    grandchild = subprocess.Popen([sys.executable, "-c", sleeper if ignoreTerm else "import time; time.sleep(120)"])
    with open(pidFile + ".tmp", "w") as stream:
        stream.write(str(grandchild.pid))
    os.replace(pidFile + ".tmp", pidFile)
    emit(event="progress", stage="train", done=1, total=0, eta_s=None)
    while True:  # the cancel file is never looked at
        time.sleep(0.05)


def orphan(pidFile):
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(pidFile, "w") as stream:
        stream.write(str(grandchild.pid))
    emit(event="result", grandchild=grandchild.pid)
    return 0


def flood(lines):
    filler = "x" * 90
    for index in range(lines):
        sys.stderr.write(f"stderr line {index} {filler}\n")
        print(f"stdout log line {index} {filler}")  # plain text on stdout is kept as log
        if index % 1000 == 0:
            emit(event="progress", stage="write", done=index, total=lines, eta_s=1.0)
    sys.stdout.write('{"event": "metric", "split":')
    sys.stdout.flush()
    time.sleep(0.2)
    sys.stdout.write(' true}\n')
    emit(event="result", lines=lines)
    sys.stderr.write("last words without a newline")
    return 0


def main(argv):
    cancelFile = None
    while argv and argv[0].startswith("--"):
        option = argv.pop(0)
        if option == "--cancel-file":
            cancelFile = argv.pop(0)
    command, arguments = argv[0], argv[1:]
    if command == "count":
        return count(cancelFile, int(arguments[0]), float(arguments[1]))
    if command in ("stubborn", "polite"):
        return holdOn(arguments[0], ignoreTerm=command == "stubborn")
    if command == "orphan":
        return orphan(arguments[0])
    if command == "flood":
        return flood(int(arguments[0]))
    if command == "crash":
        emit(event="progress", stage="segment", done=0, total=3, eta_s=None)
        return 1 // 0
    emit(event="error", message=f"unknown command {command}", hint="see fake_cli.py", exit_code=2)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
