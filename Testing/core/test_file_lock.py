"""The core without fcntl (as on Windows): it imports, and pools and the store lock through msvcrt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from helpers.images import GEOMETRIES, make_image
from helpers.paths import REPO
from VQSegCore.file_lock import try_lock, unlock
from VQSegCore.io.write import write_image, write_label_map

# A stand-in for msvcrt.locking: one exclusive lock per file (by inode), held per process, as on Windows.
WINDOWS_LIKE = textwrap.dedent("""
    import os, sys, types
    import subprocess, multiprocessing, uuid, tempfile, getpass, platform  # these probe msvcrt to detect Windows
    sys.modules["fcntl"] = None  # `import fcntl` raises ImportError, as on Windows
    held, calls = set(), []
    msvcrt = types.ModuleType("msvcrt")
    msvcrt.LK_NBLCK, msvcrt.LK_UNLCK = 2, 0
    def locking(fd, mode, nbytes):
        key = os.fstat(fd).st_ino
        calls.append(mode)
        if mode == msvcrt.LK_NBLCK:
            if key in held:
                raise OSError(13, "locked")
            held.add(key)
        else:
            held.discard(key)
    msvcrt.locking = locking
    sys.modules["msvcrt"] = msvcrt
""")


def test_two_handles_exclude_each_other_and_shared_ones_share(tmp_path):
    path = tmp_path / ".lock"
    first, second = os.open(path, os.O_RDWR | os.O_CREAT), os.open(path, os.O_RDWR)
    try:
        assert try_lock(first) and not try_lock(second)
        unlock(first)
        assert try_lock(first, shared=True) and try_lock(second, shared=True)
        unlock(first), unlock(second)
    finally:
        os.close(first), os.close(second)


def test_pool_and_store_commands_run_without_fcntl(tmp_path):
    image = make_image(GEOMETRIES["identity"], size=(16, 16, 4))
    label = np.zeros((4, 16, 16), np.uint8)
    label[1:3, 4:9, 4:9] = 1
    write_image(image, tmp_path / "ct.nii.gz")
    write_label_map(label, image, tmp_path / "label.nii.gz")
    script = WINDOWS_LIKE + textwrap.dedent(f"""
        import json, torch
        from VQSegCore.cli import main
        import VQSegCore.cli.commands.segment, VQSegCore.models, VQSegCore.pool   # what Segment imports
        from VQSegCore.model import VQSegConfig, build_model
        from VQSegCore.models import ModelStore
        codes = [main(["pool", "add", r"{tmp_path / 'ct.nii.gz'}", "--label", r"{tmp_path / 'label.nii.gz'}", "--pool", r"{tmp_path / 'pool'}"]),
                 main(["pool", "verify", "--pool", r"{tmp_path / 'pool'}"])]
        store = ModelStore(r"{tmp_path / 'models'}")
        store.add_version("m", build_model(VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16)))
        store.activate("m", "v0001")
        print(json.dumps({{"codes": codes, "locks": calls.count(msvcrt.LK_NBLCK), "unlocks": calls.count(msvcrt.LK_UNLCK),
                          "held": len(held), "active": store.active("m")}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 0] and result["active"] == "v0001"
    assert result["locks"] >= 4 and result["locks"] == result["unlocks"] and result["held"] == 0
