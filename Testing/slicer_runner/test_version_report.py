"""What the panel's Open report button opens, from the real `vqseg models list` result."""

import json
import os
import subprocess
import sys
from pathlib import Path

from VQSegLib import result_text

REPO = Path(__file__).resolve().parents[2]


def test_open_report_opens_report_md_or_the_version_folder(tmp_path):
    from conftest import store_with_active_version

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
