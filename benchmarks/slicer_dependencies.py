"""Would the Slicer module's installer resolve, and leave Slicer's own packages alone? A pip dry run per Slicer.

For each Slicer release below, the Python packages it ships (the pins of its SuperBuild
`External_python-*.cmake` files at that tag, plus SimpleITK) and the torch the PyTorch extension
installs (2.7.0: the newest build for CUDA 11.8) stand for "what is installed". The module's own
planning code (`VQSegLib.dependencies.pipPlan` and `constraintsText`, the code Slicer runs) decides
what to install and writes the constraints; pip then resolves that for the release's Python on
Linux x86-64 without installing anything (`pip install --dry-run --report`, wheels only, against
the package index this machine is configured with; `--index-url` picks another).

A release passes when pip finds a solution and no package Slicer ships, and not torch, would be
replaced. New packages (monai, slicerio, …) are listed with the versions pip chose.

    .venv/bin/python benchmarks/slicer_dependencies.py        # results/slicer_dependencies.json and .md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "VQSegExtension"))

from benchmarks.report import write_report  # noqa: E402
from VQSegLib import dependencies  # noqa: E402

TORCH_FROM_EXTENSION = "2.7.0"
# Read at the tags in Slicer's SuperBuild (External_python-*.cmake; SimpleITK: External_SimpleITK.cmake
# builds slicer-v2.5.2 at 5.10.0, External_python-SimpleITK.cmake pins 2.5.5 at 5.12.3).
SLICER_SHIPS = {
    "5.10.0": {"python": "3.12", "packages": {
        "Deprecated": "1.2.18", "GitPython": "3.1.44", "PyGithub": "2.6.1", "PyJWT": "2.10.1", "PyNaCl": "1.5.0",
        "certifi": "2025.4.26", "cffi": "1.17.1", "chardet": "5.2.0", "charset-normalizer": "3.4.2", "couchdb": "1.2",
        "cryptography": "45.0.3", "dicomweb-client": "0.60.0", "gitdb": "4.0.12", "idna": "3.10", "numpy": "2.0.2",
        "packaging": "25.0", "pillow": "11.2.1", "pip": "25.1.1", "pycparser": "2.22", "pydicom": "2.4.4",
        "pyparsing": "3.2.3", "python-dateutil": "2.9.0.post0", "requests": "2.32.3", "retrying": "1.3.4",
        "scipy": "1.13.1", "setuptools": "80.9.0", "SimpleITK": "2.5.2", "six": "1.17.0", "smmap": "5.0.2",
        "typing_extensions": "4.14.0", "urllib3": "2.4.0", "wheel": "0.45.1", "wrapt": "1.17.2"}},
    "5.12.3": {"python": "3.12", "packages": {
        "Deprecated": "1.3.1", "GitPython": "3.1.50", "PyGithub": "2.9.1", "PyJWT": "2.13.0", "PyNaCl": "1.6.2",
        "certifi": "2026.5.20", "cffi": "2.0.0", "chardet": "7.4.3", "charset-normalizer": "3.4.7", "couchdb": "1.2",
        "cryptography": "48.0.0", "dcmqi": "0.4.0", "dicomweb-client": "0.61.0", "gitdb": "4.0.12", "highdicom": "0.27.0",
        "idna": "3.16", "numpy": "2.4.6", "packaging": "26.2", "pillow": "12.2.0", "pip": "26.1.1", "pycparser": "3.0",
        "pydicom": "3.0.2", "pyjpegls": "1.5.1", "pyparsing": "3.3.2", "python-dateutil": "2.9.0.post0",
        "requests": "2.34.2", "retrying": "1.4.2", "scipy": "1.17.1", "setuptools": "82.0.1", "SimpleITK": "2.5.5",
        "six": "1.17.0", "smmap": "5.0.3", "typing_extensions": "4.15.0", "urllib3": "2.7.0", "wheel": "0.47.0",
        "wrapt": "2.2.1"}},
}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64",
             "manylinux1_x86_64", "linux_x86_64", "any")


def plan(release: str) -> dict:
    """What the module would install on `release`, and the constraints it would write (no pip run)."""
    installed = {**SLICER_SHIPS[release]["packages"], "torch": TORCH_FROM_EXTENSION}
    by_name = {dependencies.normalizeName(name): version for name, version in installed.items()}
    to_install, kept, notes = dependencies.pipPlan(versionOf=lambda name: by_name.get(dependencies.normalizeName(name)))
    constraints = dependencies.constraintsText(exclude=[dependencies.parseRequirement(r)[0] for r in to_install], installed=installed)
    return {"installed": installed, "to_install": to_install, "kept": kept, "left_out": notes, "constraints": constraints}


def resolve(release: str, planned: dict, index_url: str | None) -> dict:
    """pip's dry-run answer: resolved or not, what it would install, and what it would change."""
    with tempfile.TemporaryDirectory(prefix="vqseg-resolve-") as folder:
        folder = Path(folder)
        (folder / "constraints.txt").write_text(planned["constraints"])
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
                   "--report", str(folder / "report.json"), "--target", str(folder / "target"),
                   "--python-version", SLICER_SHIPS[release]["python"], "--only-binary=:all:",
                   *[option for platform in PLATFORMS for option in ("--platform", platform)],
                   "-c", str(folder / "constraints.txt"), *planned["to_install"]]
        if index_url:
            command[4:4] = ["--isolated", "--index-url", index_url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            problem = [line for line in done.stderr.splitlines() if "ERROR" in line or "conflict" in line.lower()]
            return {"resolved": False, "problem": "\n".join(problem[-6:]) or done.stderr[-1500:]}
        report = json.loads((folder / "report.json").read_text())
    chosen = {dependencies.normalizeName(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}
    shipped = {dependencies.normalizeName(name): version for name, version in planned["installed"].items()}
    # With an empty --target pip "installs" pinned packages too: a change is a version other than the pin.
    changed = {name: f"{shipped[name]} -> {version}" for name, version in chosen.items() if name in shipped and shipped[name] != version}
    added = {name: version for name, version in chosen.items() if name not in shipped}
    return {"resolved": True, "changed": changed, "added": added}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index-url", help="resolve against this index only (default: pip's configuration)")
    args = parser.parse_args(argv)
    rows, details = [], {}
    for release in SLICER_SHIPS:
        planned = plan(release)
        answer = resolve(release, planned, args.index_url)
        details[release] = {**{k: v for k, v in planned.items() if k != "constraints"}, **answer}
        ok = answer["resolved"] and not answer.get("changed")
        rows.append({"Slicer": release, "torch (PyTorch extension)": TORCH_FROM_EXTENSION,
                     "pip installs": ", ".join(planned["to_install"]), "resolves": answer["resolved"],
                     "replaces a shipped package": ", ".join(f"{k} {v}" for k, v in answer.get("changed", {}).items()) or "none",
                     "monai chosen": answer.get("added", {}).get("monai", ""), "left out": "; ".join(planned["left_out"]) or "-",
                     "verdict": "pass" if ok else "FAIL"})
        print(json.dumps(rows[-1]), flush=True)
    write_report("slicer_dependencies", rows, {"command": "python benchmarks/slicer_dependencies.py " + " ".join(sys.argv[1:]),
                                               "details": details})
    return 0 if all(r["verdict"] == "pass" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
