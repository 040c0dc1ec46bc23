"""ACDC semi-supervised benchmark: qpm / dropout / none / supervised-only at 3 and 7 labelled patients.

Data: ../shared/data/acdc (SSL4MIS form; `splits.json` names the labelled patients). Every other
training volume is unlabelled. Each run trains with `VQSegCore.train.train` and evaluates the final
EMA teacher (`last/`) on the 20 `labelsVal` volumes in 3D on their own grid: Dice and HD95 per
class, averaged over the three classes per volume, then over volumes. No model selection happens
(the spec has no val split), so the evaluation volumes never steer training.

Protocols:
    cpu   (default) in-plane 2 mm (the 1 mm volumes halved: ~128x108 slices), 64x64 crops,
          U-Net width 16, depth 3 (8x8 tokens per crop), K = 1024, batch 8 labelled + 8 unlabelled,
          AdamW lr 1e-3 with poly decay, 800 iterations; one run is ~10 min on a 2-core CPU.
    gpu   the SSL4MIS setting: 1 mm, 256x256 crops, batch 12 + 12, SGD lr 0.01, 30000 iterations.

Per-iteration cost is measured in a separate timing phase that interleaves the modes in rounds
(same batch, same machine load), so qpm and dropout are compared under the same conditions.

    .venv/bin/python benchmarks/acdc.py                              # everything; writes results/acdc_cpu.*
    .venv/bin/python benchmarks/acdc.py --labelled 3 --modes qpm supervised --seeds 0
    .venv/bin/python benchmarks/acdc.py --timing-only
    python benchmarks/acdc.py --protocol gpu --device cuda           # writes results/acdc_gpu.*

Finished runs are kept in the result JSON and skipped when the script is started again with the
same protocol, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from benchmarks.report import RESULTS, write_report  # noqa: E402
from VQSegCore.classes import ClassTable, SegmentClass  # noqa: E402
from VQSegCore.dataset_spec import DatasetSpec  # noqa: E402
from VQSegCore.metrics import image_metrics  # noqa: E402
from VQSegCore.model import VQSegConfig, build_model, load_model  # noqa: E402
from VQSegCore.model.config import PreprocessingConfig  # noqa: E402
from VQSegCore.infer import SegmentRequest, segment_volume  # noqa: E402
from VQSegCore.train import SemiSupervisedStep, make_teacher, train  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc"
MODES = ("qpm", "dropout", "none", "supervised")
ACDC_CLASSES = ClassTable((
    SegmentClass(1, "right_ventricle", "Right ventricle cavity", (0.9, 0.3, 0.3)),
    SegmentClass(2, "myocardium", "Myocardium", (0.3, 0.8, 0.3)),
    SegmentClass(3, "left_ventricle", "Left ventricle cavity", (0.3, 0.4, 0.9)),
))
PROTOCOLS = {
    "cpu": dict(spacing_mm=(2.0, 2.0), crop_size=64, base_width=16, depth=3, batch_size=8, optimiser="adamw",
                lr=1e-3, iterations=800),
    "gpu": dict(spacing_mm=(1.0, 1.0), crop_size=256, base_width=16, depth=4, batch_size=12, optimiser="sgd",
                lr=0.01, iterations=30000),
}
PUBLISHED = {3: {"authors_run": 0.892, "paper": 0.9057}, 7: {"authors_run": 0.904, "paper": 0.9103}}


def make_spec(data: Path, labelled_patients: list[str], folder: Path) -> DatasetSpec:
    splits = json.loads((data / "splits.json").read_text())
    cases = []
    for volume in splits["train_volumes"]:
        patient = volume.split("_")[0]
        case = {"id": volume, "image": str(data / "imagesTr" / f"{volume}.nii.gz"), "split": "train"}
        if patient in labelled_patients:
            case["label"] = str(data / "labelsTr" / f"{volume}.nii.gz")
        cases.append(case)
    path = folder / f"acdc_{len(labelled_patients)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": path.stem, "classes": ACDC_CLASSES.to_list(), "cases": cases}, indent=1))
    return DatasetSpec.load(path)


def model_config(protocol: dict, mode: str) -> VQSegConfig:
    return VQSegConfig(
        classes=ACDC_CLASSES, perturbation="qpm" if mode == "supervised" else mode,
        unet_base_width=protocol["base_width"], unet_depth=protocol["depth"],
        preprocessing=PreprocessingConfig(modality="mri", spacing_mm=protocol["spacing_mm"]),
    )


def evaluate_model(model_dir: Path, data: Path, volumes: list[str], device: str) -> dict:
    model, card = load_model(model_dir)
    per_volume = {}
    for volume in volumes:
        image = sitk.ReadImage(str(data / "imagesVal" / f"{volume}.nii.gz"))
        label = sitk.ReadImage(str(data / "labelsVal" / f"{volume}.nii.gz"))
        prediction = segment_volume(model, card, image, SegmentRequest(device=device, crop="none")).labels
        scores = image_metrics(prediction, sitk.Cast(label, sitk.sitkUInt8), ACDC_CLASSES)
        per_volume[volume] = {name: {"dice": m.dice, "hd95": m.hd95_mm, "status": m.status} for name, m in scores.items()}
    dice = [float(np.mean([c["dice"] for c in v.values()])) for v in per_volume.values()]
    hd95 = [float(np.nanmean([c["hd95"] for c in v.values()])) for v in per_volume.values()]
    per_class = {c.id: float(np.mean([v[c.id]["dice"] for v in per_volume.values()])) for c in ACDC_CLASSES.classes}
    failures = sum(c["status"] in ("missed", "false_positive") for v in per_volume.values() for c in v.values())
    return {"dice": float(np.mean(dice)), "hd95_vox": float(np.nanmean(hd95)), "dice_per_class": per_class,
            "failures": failures, "per_volume": per_volume}


class _TimeRecorder:
    """A reporter that keeps the wall time of each training iteration."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def progress(self, stage, done, total, **extra):
        if stage == "train":
            self.stamps.append(time.perf_counter())

    def metric(self, **kwargs): pass
    def log(self, *args, **kwargs): pass


def run_one(args, protocol: dict, labelled: int, mode: str, seed: int, splits: dict) -> dict:
    work = args.work / f"{args.protocol}_{labelled}_{mode}_{seed}"
    if work.exists():
        shutil.rmtree(work)
    spec = make_spec(args.data, splits["labeled_patients"][str(labelled)], args.work / "specs")
    recorder = _TimeRecorder()
    started = time.perf_counter()
    summary = train(
        spec, model_config(protocol, mode), work, iterations=args.iterations or protocol["iterations"],
        batch_size=protocol["batch_size"], crop_size=protocol["crop_size"], lr=protocol["lr"], seed=seed,
        supervised_only=mode == "supervised", optimiser=protocol["optimiser"], device=args.device,
        validate_every=10**9, checkpoint_every=10**9, reporter=recorder, cache_dir=args.work / "cache",
    )
    train_s = time.perf_counter() - started
    scores = evaluate_model(work / "last", args.data, splits["val_volumes"], args.device)
    steps = np.diff(recorder.stamps[10:]) if len(recorder.stamps) > 12 else np.diff(recorder.stamps)
    return {
        "labelled_patients": labelled, "mode": mode, "seed": seed, "iterations": summary["iterations"],
        "dice": round(scores["dice"], 4), "hd95_vox": round(scores["hd95_vox"], 2),
        **{f"dice_{k}": round(v, 4) for k, v in scores["dice_per_class"].items()},
        "failures": scores["failures"], "train_min": round(train_s / 60, 2),
        "s_per_iter_median": round(float(np.median(steps)), 4) if len(steps) else None,
        "per_volume": scores["per_volume"],
    }


def time_modes(args, protocol: dict, rounds: int, per_round: int) -> list[dict]:
    """Seconds per training step of each mode, interleaved in rounds on the same random batch."""
    size, batch = protocol["crop_size"], protocol["batch_size"]
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    x_l = torch.rand(batch, 1, size, size, generator=gen).to(device)
    y_l = torch.randint(0, 4, (batch, size, size), generator=gen).to(device)
    x_u = torch.rand(batch, 1, size, size, generator=gen).to(device)
    steps = {}
    for mode in MODES:
        torch.manual_seed(0)
        student = build_model(model_config(protocol, mode)).to(device)
        optimiser = torch.optim.AdamW(student.parameters(), lr=1e-4)
        steps[mode] = SemiSupervisedStep(student, make_teacher(student), optimiser)
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_index in range(rounds + 1):
        for mode in MODES:
            generator = torch.Generator().manual_seed(round_index)
            for _ in range(per_round):
                started = time.perf_counter()
                steps[mode](x_l, y_l, x_u, generator=generator, supervised_only=mode == "supervised")
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if round_index:  # round 0 warms up
                    samples[mode].append(time.perf_counter() - started)
    dropout = statistics.median(samples["dropout"])
    return [{"mode": mode, "s_per_iter_median": round(statistics.median(s), 4), "s_per_iter_mean": round(statistics.fmean(s), 4),
             "vs_dropout": round(statistics.median(s) / dropout, 3), "steps": len(s)} for mode, s in samples.items()]


def summary_table(runs: list[dict]) -> list[dict]:
    rows = []
    for labelled in sorted({r["labelled_patients"] for r in runs}):
        for mode in MODES:
            chosen = [r for r in runs if r["labelled_patients"] == labelled and r["mode"] == mode]
            if not chosen:
                continue
            dice = [r["dice"] for r in chosen]
            rows.append({
                "labelled patients": labelled, "mode": mode, "seeds": len(chosen),
                "Dice mean": round(statistics.fmean(dice), 4), "Dice per seed": " / ".join(f"{d:.4f}" for d in dice),
                "HD95 (vox)": round(statistics.fmean(r["hd95_vox"] for r in chosen), 2),
                "RV / Myo / LV": " / ".join(f"{statistics.fmean(r[f'dice_{c.id}'] for r in chosen):.3f}" for c in ACDC_CLASSES.classes),
                "train min": round(statistics.fmean(r["train_min"] for r in chosen), 1),
            })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    parser.add_argument("--labelled", type=int, nargs="+", choices=(3, 7), default=[3, 7])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--iterations", type=int, default=None, help="override the protocol's iteration count")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vqseg-acdc"), help="scratch folder for runs and the cache")
    parser.add_argument("--timing-only", action="store_true", help="only the interleaved per-iteration timing")
    parser.add_argument("--timing-rounds", type=int, default=5)
    parser.add_argument("--timing-steps", type=int, default=6, help="steps per mode per round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (args.data / "splits.json").is_file():
        print(f"no ACDC data at {args.data} (expected splits.json): pass --data", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    protocol = PROTOCOLS[args.protocol]
    name = f"acdc_{args.protocol}"
    result_path = args.out / f"{name}.json"
    previous = json.loads(result_path.read_text()) if result_path.is_file() else {}
    same_protocol = previous.get("protocol") == {**protocol, "spacing_mm": list(protocol["spacing_mm"])} and \
        previous.get("iterations_override") == args.iterations
    runs = [r for r in previous.get("runs", []) if same_protocol]
    timing = previous.get("timing") if same_protocol else None
    splits = json.loads((args.data / "splits.json").read_text())
    command = "python benchmarks/acdc.py " + " ".join(sys.argv[1:])

    def save() -> None:
        # Another process may run other settings into the same file (e.g. 3 and 7 patients in parallel): merge.
        if result_path.is_file():
            on_disk = json.loads(result_path.read_text())
            if on_disk.get("protocol") == json.loads(json.dumps(protocol)) and on_disk.get("iterations_override") == args.iterations:
                mine = {(r["labelled_patients"], r["mode"], r["seed"]) for r in runs}
                runs.extend(r for r in on_disk.get("runs", []) if (r["labelled_patients"], r["mode"], r["seed"]) not in mine)
        runs.sort(key=lambda r: (r["labelled_patients"], MODES.index(r["mode"]), r["seed"]))
        meta = {"protocol": protocol, "iterations_override": args.iterations, "command": command, "runs": runs,
                "timing": timing, "published": PUBLISHED,
                "evaluation": "final EMA teacher, 20 labelsVal volumes, 3D Dice/HD95 per class on the volume's grid, "
                              "mean of RV/Myo/LV per volume, then over volumes; HD95 in voxels (ACDC spacing unknown, set to 1)"}
        write_report(name, summary_table(runs), meta, args.out)
        if timing:
            write_report(f"{name}_timing", timing, {"protocol": protocol, "command": command}, args.out)

    if args.timing_only or not timing:
        timing = time_modes(args, protocol, args.timing_rounds, args.timing_steps)
        save()
        print(json.dumps(timing, indent=1), flush=True)
    if args.timing_only:
        return 0
    for seed in args.seeds:
        for labelled in args.labelled:
            for mode in args.modes:
                if any(r["labelled_patients"] == labelled and r["mode"] == mode and r["seed"] == seed for r in runs):
                    continue
                row = run_one(args, protocol, labelled, mode, seed, splits) | {"command": command, "torch_threads": torch.get_num_threads()}
                runs.append(row)
                save()
                print(json.dumps({k: v for k, v in row.items() if k != "per_volume"}), flush=True)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
