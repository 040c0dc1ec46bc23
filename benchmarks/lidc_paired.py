"""Two LIDC model scorings compared nodule by nodule: the mean difference and its bootstrap interval.

Both inputs are results files of `benchmarks/lidc_default_model.py` (their `per_case`), scored on the
same validation nodules. The interval resamples nodules (5000 draws, seed 0); it says how much the
difference depends on which nodules were scored, not how much it would move with another training run.

    git show COMMIT:benchmarks/results/lidc_default_model.json > before.json
    .venv/bin/python benchmarks/lidc_paired.py before.json benchmarks/results/lidc_default_model.json
        # results/lidc_paired.json and .md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.report import write_report  # noqa: E402

DRAWS = 5000
CHANGED = 0.01  # a nodule counts as better or worse beyond this Dice


def paired_row(before: dict, after: dict, key: str, label: str) -> dict:
    cases = sorted(c for c in after if c in before and after[c].get(key) is not None and before[c].get(key) is not None)
    if not cases:
        raise SystemExit(f"no nodule has {key!r} in both files")
    differences = np.array([after[c][key] - before[c][key] for c in cases])
    rng = np.random.default_rng(0)
    means = differences[rng.integers(0, len(differences), size=(DRAWS, len(differences)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"score": label, "nodules": len(cases), "before": round(float(np.mean([before[c][key] for c in cases])), 4),
            "after": round(float(np.mean([after[c][key] for c in cases])), 4), "difference": round(float(differences.mean()), 4),
            "95% interval": f"{low:.3f} to {high:.3f}", f"better by > {CHANGED}": int((differences > CHANGED).sum()),
            f"worse by > {CHANGED}": int((differences < -CHANGED).sum())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--name", default="lidc_paired")
    args = parser.parse_args(argv)
    before, after = (json.loads(path.read_text())["per_case"] for path in (args.before, args.after))
    reader_level = {c for c, v in after.items() if v.get("paired_dice") is not None}

    def only(table):
        return {c: v for c, v in table.items() if c in reader_level}

    empty = [c for c, v in after.items() if c in before and v["status"] in ("false_positive", "both_empty")]
    drawn = {"score": "nodules with an empty consensus (one reader) that the model draws", "nodules": len(empty),
             "before": sum(before[c]["status"] == "false_positive" for c in empty),
             "after": sum(after[c]["status"] == "false_positive" for c in empty)}
    rows = [paired_row(only(before), only(after), "dice", "Dice against the consensus, reader-level nodules"),
            paired_row(only(before), only(after), "paired_dice", "Dice paired with the readers, reader-level nodules"),
            paired_row(before, after, "dice", "Dice against the consensus, every validation nodule"), drawn]
    write_report(args.name, rows, {"command": "python benchmarks/lidc_paired.py " + " ".join(argv or sys.argv[1:]),
                                   "before": str(args.before), "after": str(args.after)})
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
