"""Inference quality checks with a trained model: bf16 against fp32, which uncertainty finds errors, OOD scores.

Model: a VQ-Seg model trained on ACDC (e.g. the `last/` folder of a `benchmarks/acdc.py` run), on the 20
ACDC validation volumes:
    precision     Dice against the truth with fp32 and with bf16 autocast, and fp32-vs-bf16 agreement
    uncertainty   how well each uncertainty map ranks the wrong voxels first: AUROC of uncertainty
                  against "prediction != truth", inside the heart's bounding box (+10 voxels)
    ood           the code-usage OOD score for in-distribution volumes (ACDC val) and for inputs
                  unlike the training data (a real CT, an abdominal MR, LIDC lung CT crops, noise);
                  the reference comes from 24 ACDC training volumes as `vqseg train` computes it

    .venv/bin/python benchmarks/inference_quality.py --model-dir /tmp/vqseg-acdc/cpu_3_qpm_0/last
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from benchmarks.acdc import ACDC_CLASSES, DEFAULT_DATA, make_spec  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from VQSegCore.infer import SegmentRequest, ood_score, segment_volume  # noqa: E402
from VQSegCore.metrics import dice_score  # noqa: E402
from VQSegCore.model import load_model  # noqa: E402
from VQSegCore.train.data import CaseCache  # noqa: E402
from VQSegCore.infer.ood import ood_reference  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    scores, positives = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(positives, dtype=bool).ravel()
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], scores.size]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def mean_dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([dice_score(prediction == c.value, truth == c.value) for c in ACDC_CLASSES.classes]))


def heart_box(truth: np.ndarray, margin: int = 10) -> tuple[slice, ...]:
    found = np.nonzero(truth)
    return tuple(slice(max(0, int(a.min()) - margin), int(a.max()) + margin + 1) for a in found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--only-ood", action="store_true", help="re-measure the OOD part only; keep the rest of the last report")
    args = parser.parse_args()
    model, card = load_model(args.model_dir)
    splits = json.loads((args.data / "splits.json").read_text())
    request = dict(device="cpu", crop="none")

    with tempfile.TemporaryDirectory() as tmp:
        spec = make_spec(args.data, splits["labeled_patients"]["3"], Path(tmp))
        cache = CaseCache(Path(tmp) / "cache", model.config.preprocessing, spec.classes)
        train_cases = [cache.prepare(case, with_label=False) for case in spec.cases("train")[::5][:24]]
        reference = ood_reference(model, train_cases, model.config, torch.device("cpu"))

    precision_rows, uncertainty_rows, ood_rows = [], [], []
    for volume in splits["val_volumes"][: args.volumes]:
        image = sitk.ReadImage(str(args.data / "imagesVal" / f"{volume}.nii.gz"))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(args.data / "labelsVal" / f"{volume}.nii.gz")))
        fp32 = segment_volume(model, {"ood_reference": reference}, image, SegmentRequest(precision="fp32", uncertainty="entropy", **request))
        ood_rows.append({"input": f"ACDC val {volume}", "kind": "in distribution", **_ood(fp32.ood)})
        if args.only_ood:
            continue
        bf16 = segment_volume(model, {}, image, SegmentRequest(precision="bf16", **request))
        sampled = segment_volume(model, {}, image, SegmentRequest(precision="fp32", uncertainty="samples", **request))
        a, b = sitk.GetArrayViewFromImage(fp32.labels), sitk.GetArrayViewFromImage(bf16.labels)
        precision_rows.append({"volume": volume, "dice_fp32": mean_dice(a, truth), "dice_bf16": mean_dice(b, truth),
                               "voxels_differing": int((a != b).sum()), "infer_s_fp32": fp32.timings_s["infer"],
                               "infer_s_bf16": bf16.timings_s["infer"]})
        box = heart_box(truth)
        wrong = (a != truth)[box]
        uncertainty_rows.append({
            "volume": volume, "error_fraction": float(wrong.mean()),
            "auroc_entropy": auroc(sitk.GetArrayViewFromImage(fp32.uncertainty)[box], wrong),
            "auroc_samples": auroc(sitk.GetArrayViewFromImage(sampled.uncertainty)[box], wrong),
        })

    others = [("real CT (TotalSegmentator example)", SHARED / "ct" / "example_ct.nii.gz"),
              ("real MR, abdomen (TotalSegmentator example)", SHARED / "ct" / "example_mr_sm.nii.gz")]
    others += [(f"LIDC crop {p.stem}", p) for p in sorted((SHARED / "lidc" / "images").glob("*.nii.gz"))[:3]]
    for name, path in others:
        if path.exists():
            image = sitk.ReadImage(str(path))
            result = segment_volume(model, {"ood_reference": reference}, image, SegmentRequest(**request))
            ood_rows.append({"input": name, "kind": "out of distribution", **_ood(result.ood)})
    noise = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 4096, (10, 200, 200)).astype(np.uint16))
    ood_rows.append({"input": "uniform noise", "kind": "out of distribution",
                     **_ood(segment_volume(model, {"ood_reference": reference}, noise, SegmentRequest(**request)).ood)})

    if args.only_ood:
        previous = json.loads((Path(__file__).parent / "results" / "inference_quality.json").read_text())
        precision_rows, uncertainty_rows = previous["precision"], previous["uncertainty"]

    def mean(rows, key):
        return round(float(np.nanmean([r[key] for r in rows])), 4)

    summary = [
        {"check": f"Dice fp32 (mean of RV/Myo/LV, {args.volumes} val volumes)", "value": mean(precision_rows, "dice_fp32")},
        {"check": "Dice bf16 autocast", "value": mean(precision_rows, "dice_bf16")},
        {"check": "voxels whose label differs fp32 vs bf16 (per volume)", "value": mean(precision_rows, "voxels_differing")},
        {"check": "infer s/volume fp32", "value": mean(precision_rows, "infer_s_fp32")},
        {"check": "infer s/volume bf16 (emulated on CPUs without native bf16)", "value": mean(precision_rows, "infer_s_bf16")},
        {"check": "error-detection AUROC, softmax entropy", "value": mean(uncertainty_rows, "auroc_entropy")},
        {"check": "error-detection AUROC, flip + QPM samples", "value": mean(uncertainty_rows, "auroc_samples")},
        {"check": "OOD score / threshold, ACDC val (max)", "value": round(max(r["ratio"] for r in ood_rows if r["kind"] == "in distribution"), 3)},
        {"check": "OOD score / threshold, other inputs (min)", "value": round(min(r["ratio"] for r in ood_rows if r["kind"] != "in distribution"), 3)},
        {"check": "OOD warnings on ACDC val", "value": sum(bool(r["warning"]) for r in ood_rows if r["kind"] == "in distribution")},
        {"check": "OOD warnings on out-of-distribution inputs", "value": f"{sum(bool(r['warning']) for r in ood_rows if r['kind'] != 'in distribution')}"
                                                                     f" of {sum(r['kind'] != 'in distribution' for r in ood_rows)}"},
    ]
    write_report("inference_quality", summary, {
        "command": "python benchmarks/inference_quality.py " + " ".join(sys.argv[1:]), "model": str(args.model_dir),
        "model_training": card.get("training", {}), "ood_reference": reference,
        "precision": precision_rows, "uncertainty": uncertainty_rows, "ood": ood_rows,
    })
    for row in summary:
        print(row)
    return 0


def _ood(score) -> dict:
    return {"divergence": round(score.divergence, 4), "expected": round(score.expected, 4), "excess": round(score.excess, 4),
            "ratio": round(score.ratio, 3), "mean_distance": round(score.mean_distance, 3), "tokens": score.tokens,
            "warning": bool(score.warning)}


if __name__ == "__main__":
    sys.exit(main())
