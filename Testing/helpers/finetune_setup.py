"""A tiny model store and training pool for the fine-tune tests (in-process, CLI, torchrun, kill).

    phantoms = write_phantoms(folder)                       # 5 phantoms, 64×64×16 at 3 mm
    store, pool = make_store_and_pool(root, phantoms, labelled=3)   # v0001 active; 3 labelled + 2 unlabelled
    seen = kill_on_event(process, at_progress("train", 3), kill)    # SIGKILL a --events child at a chosen moment

With 3 labelled cases one is held out, so the gate has a case to score; the model is a 4-channel
U-Net of depth 2, so a few iterations take seconds on a CPU.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

import SimpleITK as sitk
import torch

from VQSegCore.model import VQSegConfig, build_model
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.models import ModelStore
from VQSegCore.pool import Pool
from VQSegCore.synth import PhantomSpec, make_chest_ct

TINY = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, preprocessing=PreprocessingConfig(spacing_mm=(3.0, 3.0)))
MODEL = "lung"
# Command-line options for a fine-tune of a few seconds (checkpoint and validation every 2 iterations).
FAST_ARGS = ("--iterations", "4", "--batch-size", "2", "--crop-size", "32", "--validate-every", "2", "--device", "cpu")


def write_phantoms(folder: Path, count: int = 5) -> list[tuple[Path, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for seed in range(count):
        phantom = make_chest_ct(PhantomSpec(size_xy=(64, 64), n_slices=16, spacing=(3, 3, 4), seed=seed, tumour_diameter_mm=30))
        image, label = folder / f"p{seed}.nii.gz", folder / f"p{seed}-label.nii.gz"
        sitk.WriteImage(phantom.image, str(image))
        sitk.WriteImage(phantom.label, str(label))
        written.append((image, label))
    return written


def make_store_and_pool(root: Path, phantoms: list[tuple[Path, Path]], labelled: int,
                        store_root: Path | None = None) -> tuple[ModelStore, Pool]:
    """A store whose `MODEL` has one active version (v0001) and a pool of the phantoms, the first `labelled` with labels."""
    store = ModelStore(store_root or root / "models")
    torch.manual_seed(0)
    base = store.add_version(MODEL, build_model(TINY), status="promoted")
    store.activate(MODEL, base)
    pool = Pool.create(root / "pool")
    for index, (image, label) in enumerate(phantoms):
        pool.add(image, label=label if index < labelled else None)
    return store, pool


def at_progress(stage: str, done: int) -> Callable[[dict], bool]:
    """A moment for `kill_on_event`: the progress event of `stage` reaching `done`."""
    return lambda event: event["event"] == "progress" and event["stage"] == stage and event["done"] == done


def kill_on_event(process, moment: Callable[[dict], bool], kill: Callable[[], None], timeout_s: float) -> list[dict]:
    """Read the `--events` lines of `process` until `moment(event)` holds, then `kill()`; the events read.

    Lines that are not JSON objects (a launcher's own output) are skipped. A run that never reaches the
    moment is killed by a watchdog after `timeout_s`, so a test fails instead of hanging."""
    watchdog = threading.Timer(timeout_s, kill)
    watchdog.start()
    seen = []
    try:
        for line in process.stdout:
            if not line.startswith("{"):
                continue
            seen.append(json.loads(line))
            if moment(seen[-1]):
                kill()
                break
    finally:
        watchdog.cancel()
        process.wait()
        process.stdout.close()
    return seen
