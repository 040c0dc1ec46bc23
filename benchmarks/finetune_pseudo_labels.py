"""What each model of a fine-tune benchmark run would teach itself on the pool's unlabelled cases.

The semi-supervised fine-tune learns from the teacher's confident pseudo-labels on the unlabelled
cases (softmax confidence >= 0.95). This scores those pseudo-labels against the phantoms' truth, for
the base model and every candidate a `benchmarks/finetune.py` run left in its --work folder:
- precision: of the voxels the model is confident are tumour, the share that are tumour;
- tumour taught as tumour / as background: the share of the true tumour confidently labelled each way;
- false positives (tumour at p >= 0.5 outside the truth) and the share of them that are confident,
  which self-training teaches back to the student instead of correcting; missed tumour voxels beside them.
Whole volumes at the original spacing, as `vqseg segment` produces them (training sees resampled
crops: the same model, another view of it).

    .venv/bin/python benchmarks/finetune_pseudo_labels.py --results benchmarks/results/finetune.json --work /tmp/ftbench
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from benchmarks.finetune import MODEL, pool_cases_trained_on, pool_files, read_cases  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from VQSegCore.infer import SegmentRequest, segment_volume  # noqa: E402
from VQSegCore.metrics import dice_score  # noqa: E402
from VQSegCore.model import load_model  # noqa: E402
from VQSegCore.models import ModelStore  # noqa: E402
from VQSegCore.train.losses import PSEUDO_LABEL_THRESHOLD  # noqa: E402


def pseudo_label_counts(model_dir: Path, cases: list[tuple[sitk.Image, np.ndarray]], threshold: float) -> dict:
    """Voxel counts over all (image, tumour mask) cases (tumour: class 1 of a two-class model) and the per-case Dice."""
    model, card = load_model(model_dir)
    counts = dict.fromkeys(("confident_tumour", "confident_tumour_right", "truth", "truth_confident_background",
                            "false_positive", "false_positive_confident", "missed"), 0)
    dice = []
    for image, truth in cases:
        result = segment_volume(model, card, image, SegmentRequest(device="cpu", probabilities=True))
        if result.probabilities.GetNumberOfComponentsPerPixel() != 1:
            raise SystemExit(f"{model_dir}: a two-class model (background, tumour) is expected")
        tumour = sitk.GetArrayFromImage(result.probabilities)
        confident, confident_background, predicted = tumour >= threshold, tumour <= 1.0 - threshold, tumour >= 0.5
        dice.append(dice_score(sitk.GetArrayFromImage(result.labels) == 1, truth))
        counts["confident_tumour"] += int(confident.sum())
        counts["confident_tumour_right"] += int((confident & truth).sum())
        counts["truth"] += int(truth.sum())
        counts["truth_confident_background"] += int((confident_background & truth).sum())
        counts["false_positive"] += int((predicted & ~truth).sum())
        counts["false_positive_confident"] += int((confident & ~truth).sum())
        counts["missed"] += int((~predicted & truth).sum())
    return counts | {"dice": dice}


def row(model: str, seed, counts: dict) -> dict:
    def share(part: str, whole: str):
        return round(counts[part] / counts[whole], 3) if counts[whole] else ""

    return {"model": model, "seed": seed, f"Dice ({len(counts['dice'])} unlabelled pool cases)": round(float(np.mean(counts["dice"])), 4),
            "precision of confident tumour": share("confident_tumour_right", "confident_tumour"),
            "tumour taught as tumour": share("confident_tumour_right", "truth"),
            "tumour taught as background": share("truth_confident_background", "truth"),
            "false-positive voxels": counts["false_positive"],
            "of them confident": share("false_positive_confident", "false_positive"), "missed tumour voxels": counts["missed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "finetune.json",
                        help="a results JSON of benchmarks/finetune.py (default results/finetune.json)")
    parser.add_argument("--work", type=Path, required=True, help="the --work folder of that run, with its models and phantoms")
    parser.add_argument("--threshold", type=float, default=PSEUDO_LABEL_THRESHOLD,
                        help=f"pseudo-label confidence (default {PSEUDO_LABEL_THRESHOLD}, the fine-tune's)")
    parser.add_argument("--name", default="finetune_pseudo_labels", help="results/NAME.json and .md")
    args = parser.parse_args()
    if not 0.5 < args.threshold < 1.0:
        parser.error(f"--threshold must lie in (0.5, 1), got {args.threshold}")
    benchmark = json.loads(args.results.read_text())
    runs = benchmark["finetune_results"]
    if not runs:
        raise SystemExit(f"{args.results} holds no fine-tune results")
    outside = [result["run"] for result in runs.values() if not Path(result["run"]).resolve().is_relative_to(args.work.resolve())]
    if outside:
        raise SystemExit(f"{args.results} names runs outside {args.work} ({outside[0]}): give the --work folder of that run")
    pooled = pool_files(args.work / "data")
    missing = [str(path) for pair in pooled for path in pair if not path.is_file()]
    if missing:
        raise SystemExit(f"{args.work} does not hold that run's pool phantoms (missing {missing[0]}): give the run's --work folder")
    # every run holds out the same corrected case, so the first run's unlabelled cases are every run's
    _, unlabelled_files = pool_cases_trained_on(Path(next(iter(runs.values()))["run"]), pooled)
    if not unlabelled_files:
        raise SystemExit(f"the run of {args.results} had no unlabelled pool case (--label-all?): nothing was pseudo-labelled")
    unlabelled = read_cases(unlabelled_files)  # read once, scored against every model

    base = ModelStore(args.work / "home" / "models")  # the run's starting store: the base model is its active version
    rows = [row("base (family A only)", "", pseudo_label_counts(base.path(MODEL, base.active(MODEL)), unlabelled, args.threshold))]
    for name, result in runs.items():
        mode, seed = name.rsplit(", seed ", 1)
        store = ModelStore(Path(result["run"]).parents[2])
        counts = pseudo_label_counts(store.path(MODEL, result["version"]), unlabelled, args.threshold)
        rows.append(row(f"fine-tuned, {mode}", int(seed), counts))
        print(rows[-1], flush=True)
    write_report(args.name, rows, {
        "command": "python benchmarks/finetune_pseudo_labels.py " + " ".join(sys.argv[1:]),
        "finetune_results": str(args.results), "finetune_command": benchmark["command"], "threshold": args.threshold,
        "cases": f"the {len(unlabelled)} unlabelled pool cases (family B), whole volumes at their own spacing",
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
