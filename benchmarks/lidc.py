"""LIDC-IDRI lung-nodule semi-supervised benchmark: qpm / dropout / none / supervised-only.

Data: the LIDC crops (../shared/data/lidc), converted once to HU with an assumed spacing by
`benchmarks/lidc_data.py`. Patients are split by a hash of their id (20% validation). Of the
training patients, 5% and 10% (in a seeded order) are labelled; every other training case is
unlabelled. Each run trains with `VQSegCore.train.train` and the final EMA teacher (`last/`) is
evaluated on every case of the validation patients in 3D on its own grid: Dice and HD95 (mm, in
the assumed spacing) per case, then averaged. No model selection: the spec has no val split.

Protocol cpu (default): 2.5D (one context slice each side), model spacing = the data's 0.7 mm,
64x64 crops (half of them centred on a nodule), U-Net width 16, depth 3, K = 1024, batch 8 + 8,
AdamW 1e-3 poly, 400 iterations. Finished runs are kept and skipped when started again.

    .venv/bin/python benchmarks/lidc.py                          # writes results/lidc_cpu.*
    .venv/bin/python benchmarks/lidc.py --fractions 0.1 --modes qpm supervised
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from benchmarks import lidc_data, lidc_readers  # noqa: E402
from benchmarks.report import RESULTS, write_report  # noqa: E402
from VQSegCore.classes import LUNG_TUMOUR  # noqa: E402
from VQSegCore.dataset_spec import DatasetSpec  # noqa: E402
from VQSegCore.infer import SegmentRequest, segment_volume  # noqa: E402
from VQSegCore.metrics import image_metrics  # noqa: E402
from VQSegCore.model import VQSegConfig, load_model  # noqa: E402
from VQSegCore.model.config import PreprocessingConfig  # noqa: E402
from VQSegCore.train import train  # noqa: E402

MODES = ("qpm", "dropout", "none", "supervised")
PROTOCOL = dict(spacing_mm=lidc_data.ASSUMED_SPACING_MM[:2], context_slices=1, crop_size=64, base_width=16, depth=3,
                batch_size=8, optimiser="adamw", lr=1e-3, iterations=400)


def labelled_patients(train_patients: list[str], fraction: float, seed: int = 0) -> set[str]:
    order = sorted(train_patients)
    random.Random(seed).shuffle(order)
    return set(order[: max(1, round(fraction * len(order)))])


def model_config(mode: str) -> VQSegConfig:
    return VQSegConfig(
        classes=LUNG_TUMOUR, perturbation="qpm" if mode == "supervised" else mode,
        unet_base_width=PROTOCOL["base_width"], unet_depth=PROTOCOL["depth"],
        preprocessing=PreprocessingConfig(modality="ct", spacing_mm=PROTOCOL["spacing_mm"],
                                          context_slices=PROTOCOL["context_slices"]),
    )


def evaluate_model(model_dir: Path, spec: DatasetSpec, window: int | None = None, data: Path = lidc_data.DEFAULT_DATA) -> dict:
    """Scores on the val split; `window` None: the model's own inference window, 0: whole slices.

    Beside the mean over every case (where a nodule only one reader marked has an empty reference, so
    any drawing there scores 0), the cases scored at reader level (benchmarks/lidc_readers.py) give the
    figure comparable to one radiologist against the others: against the consensus, and paired with
    the readers' own references."""
    model, card = load_model(model_dir)
    per_case = {}
    request = SegmentRequest(device="cpu", crop="none", window=window)
    for case in spec.entries:
        if case.split != "val":
            continue
        label = sitk.ReadImage(str(case.label))
        prediction = segment_volume(model, card, sitk.ReadImage(str(case.image)), request).labels
        scores = image_metrics(prediction, sitk.Cast(label, sitk.sitkUInt8), LUNG_TUMOUR)
        tumour = next(iter(scores.values()))
        paired = lidc_readers.paired_model_score(sitk.GetArrayFromImage(prediction) > 0, lidc_readers.reader_masks(case.id, data))
        per_case[case.id] = {"dice": tumour.dice, "hd95_mm": tumour.hd95_mm, "status": tumour.status, "paired_dice": paired}
    return {**summarise(per_case), "per_case": per_case}


def summarise(per_case: dict) -> dict:
    dice = [c["dice"] for c in per_case.values()]
    hd95 = [c["hd95_mm"] for c in per_case.values() if c["hd95_mm"] is not None and np.isfinite(c["hd95_mm"])]
    scored = [(c["dice"], c["paired_dice"]) for c in per_case.values() if c.get("paired_dice") is not None]
    return {"dice": float(np.mean(dice)), "dice_median": float(np.median(dice)),
            "hd95_mm": float(np.median(hd95)) if hd95 else None,
            "missed": sum(c["status"] == "missed" for c in per_case.values()), "cases": len(per_case),
            "empty_reference": sum(c["status"] in ("false_positive", "both_empty") for c in per_case.values()),
            "reader_level_cases": len(scored),
            "reader_level_dice": float(np.mean([d for d, _ in scored])) if scored else None,
            "reader_level_dice_median": float(np.median([d for d, _ in scored])) if scored else None,
            "paired_dice": float(np.mean([p for _, p in scored])) if scored else None}


def run_one(args, fraction: float, mode: str, seed: int, cache: Path) -> dict:
    all_patients = lidc_data.patients(args.data)
    val = {p for p in all_patients if lidc_data.is_validation_patient(p)}
    train_patients = [p for p in all_patients if p not in val]
    labelled = labelled_patients(train_patients, fraction, seed)
    spec_path = lidc_data.write_spec(args.work / "specs" / f"lidc_{fraction}_{seed}.json", cache, labelled,
                                     set(train_patients) - labelled, val, args.data)
    spec = DatasetSpec.load(spec_path)
    work = args.work / f"{fraction}_{mode}_{seed}"
    if work.exists():  # an interrupted run of these settings: start it again
        shutil.rmtree(work)
    started = time.perf_counter()
    summary = train(spec, model_config(mode), work, iterations=args.iterations, batch_size=PROTOCOL["batch_size"],
                    crop_size=PROTOCOL["crop_size"], lr=PROTOCOL["lr"], seed=seed, supervised_only=mode == "supervised",
                    optimiser=PROTOCOL["optimiser"], device="cpu", validate_every=10**9, checkpoint_every=10**9,
                    cache_dir=args.work / "cache")
    train_s = time.perf_counter() - started
    scores = evaluate_model(work / "last", spec, data=args.data)
    return {"fraction": fraction, "labelled_patients": len(labelled), "mode": mode, "seed": seed,
            "iterations": summary["iterations"], "dice": round(scores["dice"], 4), "dice_median": round(scores["dice_median"], 4),
            "hd95_mm_median": None if scores["hd95_mm"] is None else round(scores["hd95_mm"], 2),
            "missed": scores["missed"], "val_cases": scores["cases"], "train_min": round(train_s / 60, 2),
            "per_case": scores["per_case"]}


def summary_table(runs: list[dict]) -> list[dict]:
    rows = []
    for fraction in sorted({r["fraction"] for r in runs}):
        for mode in MODES:
            for r in (r for r in runs if r["fraction"] == fraction and r["mode"] == mode):
                rows.append({"labelled": f"{fraction:.0%} ({r['labelled_patients']} patients)", "mode": mode, "seed": r["seed"],
                             "Dice mean": r["dice"], "Dice median": r["dice_median"], "HD95 median (mm)": r["hd95_mm_median"],
                             "missed / cases": f"{r['missed']} / {r['val_cases']}", "train min": round(r["train_min"], 1)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=lidc_data.DEFAULT_DATA)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.05])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--iterations", type=int, default=PROTOCOL["iterations"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vqseg-lidc"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (args.data / "patients.json").is_file():
        print(f"no LIDC data at {args.data} (expected patients.json): pass --data", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = lidc_data.prepare(args.data, args.work / "hu")
    result_path = args.out / "lidc_cpu.json"
    protocol = {**PROTOCOL, "iterations": args.iterations, "spacing_mm": list(PROTOCOL["spacing_mm"])}
    previous = json.loads(result_path.read_text()) if result_path.is_file() else {}
    runs = previous.get("runs", []) if previous.get("protocol") == protocol else []
    command = "python benchmarks/lidc.py " + " ".join(sys.argv[1:])

    def save() -> None:
        # Another process may run other fractions into the same file: keep its finished runs.
        on_disk = json.loads(result_path.read_text()) if result_path.is_file() else {}
        if on_disk.get("protocol") == protocol:
            mine = {(r["fraction"], r["mode"], r["seed"]) for r in runs}
            runs.extend(r for r in on_disk.get("runs", []) if (r["fraction"], r["mode"], r["seed"]) not in mine)
        runs.sort(key=lambda r: (-r["fraction"], MODES.index(r["mode"]), r["seed"]))
        meta = {"protocol": protocol, "runs": runs, "command": command,
                "hu_map": [lidc_data.HU_SLOPE, lidc_data.HU_INTERCEPT], "assumed_spacing_mm": lidc_data.ASSUMED_SPACING_MM,
                "evaluation": "final EMA teacher; every case of the validation patients (hash split, 20%); 3D Dice "
                              "and HD95 per case on its own grid (HD95 in the assumed spacing; median over cases "
                              "where both masks are non-empty)"}
        write_report("lidc_cpu", summary_table(runs), meta, args.out)

    for seed in args.seeds:
        for fraction in args.fractions:
            for mode in args.modes:
                if any(r["fraction"] == fraction and r["mode"] == mode and r["seed"] == seed for r in runs):
                    continue
                row = run_one(args, fraction, mode, seed, cache) | {"command": command, "torch_threads": torch.get_num_threads()}
                runs.append(row)
                save()
                print(json.dumps({k: v for k, v in row.items() if k != "per_case"}), flush=True)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
