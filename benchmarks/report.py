"""Shared output of every benchmark: a JSON file and a Markdown table under benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_summary() -> dict:
    import torch

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_report(name: str, rows: list[dict], meta: dict, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write `<name>.json` (meta + rows) and `<name>.md` (a table of the rows); return both paths."""
    folder = Path(out_dir) if out_dir else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine_summary(), **meta, "rows": rows}
    json_path = folder / f"{name}.json"
    _replace(json_path, json.dumps(payload, indent=2) + "\n")
    md_path = folder / f"{name}.md"
    _replace(md_path, markdown_table(rows) + "\n")
    return json_path, md_path


def _replace(path: Path, text: str) -> None:
    """Write then rename: a benchmark running beside another never reads a half-written file."""
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
