"""Semi-supervised against supervised-only, seed by seed, over one or more `finetune.py` results files.

Each run of `finetune.py` compares its modes under the same conditions (same machine speed, same
base); runs made at different times are pooled here only as pairs: the per-seed difference of the
two modes' mean Dice on the test phantoms. Writes the pairs, their mean, standard error and t.

    .venv/bin/python benchmarks/finetune_paired.py --results finetune,finetune_seeds345   # results/finetune_paired.*
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.finetune import DICE_COLUMN, MODES, candidate_label  # noqa: E402
from benchmarks.report import RESULTS, write_report  # noqa: E402


def mode_dice(results: dict, key: str) -> dict[int, float]:
    """{seed: mean test Dice} of one mode's fine-tuned rows in a finetune.py results file."""
    prefix = f"{candidate_label(key)} ("
    return {int(row["seed"]): row[DICE_COLUMN] for row in results["rows"] if row["model"].startswith(prefix)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", required=True, help="comma-separated names of finetune.py results (results/NAME.json)")
    parser.add_argument("--semi", default="semi", choices=MODES, help="the semi-supervised mode (default semi)")
    parser.add_argument("--supervised", default="supervised", choices=MODES, help="the mode it is compared with (default supervised)")
    parser.add_argument("--name", default="finetune_paired", help="results/NAME.json and .md (default finetune_paired)")
    args = parser.parse_args()
    rows, seen = [], set()
    for name in args.results.split(","):
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            parser.error(f"no results file {path}")
        results = json.loads(path.read_text())
        semi, supervised = mode_dice(results, args.semi), mode_dice(results, args.supervised)
        for seed in sorted(semi.keys() & supervised.keys()):
            if seed in seen:
                parser.error(f"seed {seed} is in more than one results file: each pair must count once")
            seen.add(seed)
            rows.append({"seed": seed, "results": name, MODES[args.semi][0]: semi[seed], MODES[args.supervised][0]: supervised[seed],
                         "difference": round(semi[seed] - supervised[seed], 4)})
    if len(rows) < 2:
        parser.error(f"{len(rows)} seed(s) with both modes: a standard error needs at least 2")
    differences = [row["difference"] for row in rows]
    mean, error = statistics.mean(differences), statistics.stdev(differences) / math.sqrt(len(differences))
    summary = {"pairs": len(rows), "seeds_won": sum(d > 0 for d in differences), "mean_difference": round(mean, 4),
               "standard_error": round(error, 4), "t": round(mean / error, 2), "degrees_of_freedom": len(rows) - 1,
               "mean_semi": round(statistics.mean(row[MODES[args.semi][0]] for row in rows), 4),
               "mean_supervised": round(statistics.mean(row[MODES[args.supervised][0]] for row in rows), 4)}
    rows.append({"seed": "all", "results": f"{summary['seeds_won']} of {len(differences)} won",
                 MODES[args.semi][0]: summary["mean_semi"], MODES[args.supervised][0]: summary["mean_supervised"],
                 "difference": f"{mean:+.4f} ± {error:.4f} (t = {summary['t']}, {summary['degrees_of_freedom']} d.o.f.)"})
    write_report(args.name, rows, {"command": "python benchmarks/finetune_paired.py " + " ".join(sys.argv[1:]),
                                   "results": args.results.split(","), "summary": summary})
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
