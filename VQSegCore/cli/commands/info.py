"""`vqseg info`: versions, compute device, threads and where data lives — the first thing to ask for in a bug report."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata

from VQSegCore import __version__
from VQSegCore.paths import models_dir, pools_dir, vqseg_home

_PACKAGES = ("torch", "numpy", "SimpleITK", "slicerio", "safetensors", "monai", "highdicom")


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("info", help="show versions, compute device, threads and VQSEG_HOME")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    import torch

    return {
        "vqseg": __version__,
        "python": f"{sys.version.split()[0]} ({sys.executable})",
        "platform": platform.platform(),
        "packages": {name: _version_of(name) for name in _PACKAGES},
        "device": describe_devices(torch),
        "threads": {
            "torch": torch.get_num_threads(),
            "cpu_cores": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        },
        "vqseg_home": str(vqseg_home()),
        "models_dir": str(models_dir()),
        "pools_dir": str(pools_dir()),
    }


def describe_devices(torch) -> dict:
    """What `--device auto` uses (CUDA, else the CPU; an Apple GPU (MPS) is reported but not used) and each GPU's memory."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cuda = [torch.cuda.get_device_name(i) for i in range(count)]
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return {
        "default": "cuda" if cuda else "cpu",
        "cuda": cuda or "none",
        "cuda_memory_gb": [round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1) for i in range(count)],
        "mps": mps,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _version_of(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
