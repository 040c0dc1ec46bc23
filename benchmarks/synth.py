"""Speed and peak memory of the synthetic chest CT generator (VQSegCore.synth).

Each configuration runs in a fresh process so its peak RSS is its own.
Usage: python benchmarks/synth.py [--repeats 3]
Writes benchmarks/results/synth.json and synth.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = [
    {"size_xy": [512, 512], "n_slices": 300, "spacing": [0.7, 0.7, 1.5]},
    {"size_xy": [512, 512], "n_slices": 120, "spacing": [0.8, 0.8, 3.0]},
    {"size_xy": [256, 256], "n_slices": 64, "spacing": [1.5, 1.5, 5.0]},
]


def measure_one(config: dict, seed: int) -> dict:
    from VQSegCore.synth import PhantomSpec, make_chest_ct

    spec = PhantomSpec(size_xy=tuple(config["size_xy"]), n_slices=config["n_slices"], spacing=tuple(config["spacing"]), seed=seed)
    started = time.perf_counter()
    phantom = make_chest_ct(spec)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tumour_volume_ml": phantom.tumour_volume_ml,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="seeds per configuration (default 3)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one measurement in this process
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(json.loads(args.one), args.seed)))
        return

    from report import write_report

    rows = []
    for config in CONFIGS:
        runs = []
        for seed in range(args.repeats):
            output = subprocess.run(
                [sys.executable, __file__, "--one", json.dumps(config), "--seed", str(seed)],
                capture_output=True, text=True, check=True,
            ).stdout
            runs.append(json.loads(output.strip().splitlines()[-1]))
        nx, ny = config["size_xy"]
        rows.append({
            "volume": f"{nx}×{ny}×{config['n_slices']}",
            "spacing_mm": "×".join(f"{s:g}" for s in config["spacing"]),
            "seeds": args.repeats,
            "median_s": round(statistics.median(r["seconds"] for r in runs), 2),
            "max_s": round(max(r["seconds"] for r in runs), 2),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs)),
        })
        print(rows[-1], flush=True)
    json_path, md_path = write_report("synth", rows, {"command": "python benchmarks/synth.py --repeats %d" % args.repeats})
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
