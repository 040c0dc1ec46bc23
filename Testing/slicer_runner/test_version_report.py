"""What the panel's Open report button opens, from the real `vqseg models list` result."""

import json
import os
import subprocess
import sys
from pathlib import Path

from VQSegLib import result_text

REPO = Path(__file__).resolve().parents[2]


def test_open_report_opens_report_md_or_the_version_folder(tmp_path):
    from helpers.stores import store_with_active_version

    store = store_with_active_version(tmp_path / "home" / "models")
    done = subprocess.run([sys.executable, "-m", "VQSegCore", "--events", "models", "list", "lung"], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "VQSEG_HOME": str(tmp_path / "home")}, timeout=120)
    listed = json.loads(done.stdout.splitlines()[-1])
    folder = store.path("lung", "v0001")
    assert result_text.versionReport(listed, "lung", "v0001") == str(folder)  # no report yet: the folder
    (folder / "report.md").write_text("# report\n")
    assert result_text.versionReport(listed, "lung", "v0001") == str(folder / "report.md")
    assert result_text.versionReport(listed, "lung", "v0042") is None
    assert result_text.versionReport(None, "lung", "v0001") is None


def test_device_advice_from_the_real_info_and_from_gpu_results():
    done = subprocess.run([sys.executable, "-m", "VQSegCore", "--events", "info"], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    info = json.loads(done.stdout.splitlines()[-1])
    assert info["device"]["default"] == "cpu" and info["device"]["cuda_memory_gb"] == []
    advice = result_text.deviceAdvice(info)
    assert advice.startswith("No CUDA GPU found") and f"({info['threads']['cpu_cores']} cores)" in advice
    gpu = {"device": {"cuda": ["NVIDIA RTX A2000"], "cuda_memory_gb": [3.8], "mps": False}, "threads": {"cpu_cores": 8}}
    assert result_text.deviceAdvice(gpu).startswith("GPU: NVIDIA RTX A2000 (3.8 GB).") and "Device: cpu" in result_text.deviceAdvice(gpu)
    mac = {"device": {"cuda": "none", "mps": True}, "threads": {"cpu_cores": 10}}
    assert "MPS) is not used" in result_text.deviceAdvice(mac)
