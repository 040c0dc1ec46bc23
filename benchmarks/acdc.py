"""ACDC semi-supervised benchmark: qpm / dropout / none / supervised-only at 3 and 7 labelled patients.

Data: ../shared/data/acdc (SSL4MIS form; `splits.json` names the labelled patients). Every other
training volume is unlabelled. Each run trains with `VQSegCore.train.train` and evaluates the final
EMA teacher (`last/`) on the 20 `labelsVal` volumes in 3D on their own grid: Dice and HD95 per
class, averaged over the three classes per volume, then over volumes. No model selection happens
(the spec has no val split), so the evaluation volumes never steer training. Every model is
evaluated twice: as `vqseg segment` runs it (windows of the training crop, Gaussian blending: the
"Dice" column) and on whole slices ("Dice whole slice"). ACDC's spacing is not known in this form
and is recorded as 1 mm, so HD95 in mm is HD95 in voxels.

Variants (`--variant`): "defaults" is the code as it ships. "baseline" restores the settings before
the method's fidelity fixes (strong views clamped to [0, 1], constant EMA 0.99, no code-usage entropy
loss, a fixed QPM temperature, unperturbed skips); "+range", "+ramp", "+entropy", "+kernel" and
"+skips" each add one fix to it (the baseline keeps the paper's loss weights, L_sup + L_unsup);
"paper-weights" is the defaults with the paper's loss weights instead of the authors' code's
1/2 (5 L_sup + L_unsup); "defaults+skips" is the defaults with skip perturbation on, to rank
qpm against dropout with every level perturbed. `--ablation` runs the baseline and each single fix and writes
results/acdc_cpu_ablation.*. Each run records the teacher's confident pseudo-label coverage and QPM's
effective candidates over iterations.

Protocols:
    cpu   (default) in-plane 2 mm (the 1 mm volumes halved: ~128x108 slices), 64x64 crops,
          U-Net width 16, depth 3 (8x8 tokens per crop), K = 1024, batch 8 labelled + 8 unlabelled,
          AdamW lr 1e-3 with poly decay, 800 iterations; a run takes 11-19 min with one thread,
          two side by side on a 2-core CPU.
    gpu   the SSL4MIS setting: 1 mm, 256x256 crops, batch 12 + 12, SGD lr 0.01, 30000 iterations.

Per-iteration cost is measured in a separate timing phase that interleaves the modes in rounds
(same batch, same machine load), so qpm and dropout are compared under the same conditions.

    .venv/bin/python benchmarks/acdc.py                              # everything; writes results/acdc_cpu.*
    .venv/bin/python benchmarks/acdc.py --labelled 3 --modes qpm supervised --seeds 0
    .venv/bin/python benchmarks/acdc.py --timing-only
    .venv/bin/python benchmarks/acdc.py --labelled 3 --modes qpm --iterations 1600 --threads 1   # writes results/acdc_cpu_1600it.*
    .venv/bin/python benchmarks/acdc.py --ablation --labelled 3 --modes qpm --seeds 0   # writes results/acdc_cpu_ablation.*
    .venv/bin/python benchmarks/acdc.py --ablation baseline +range +ramp --labelled 3 --modes qpm --threads 1 &  # two side by side
    python benchmarks/acdc.py --protocol gpu --device cuda           # writes results/acdc_gpu.*

Finished runs are kept in the result JSON and skipped when the script is started again with the
same protocol; a run cut short resumes from its last checkpoint (every 100 iterations), so an
interrupted benchmark resumes where it stopped. Two processes may share a result file.
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
from VQSegCore.model.quantizer import codebook_usage  # noqa: E402
from VQSegCore.infer import SegmentRequest, segment_volume  # noqa: E402
from VQSegCore.infer.ood import CodeStatistics  # noqa: E402
from VQSegCore.train import SemiSupervisedStep, make_teacher, train  # noqa: E402
from VQSegCore.train.checkpoint import checkpoint_folder  # noqa: E402

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
# (model config fields, SemiSupervisedStep options) of each variant, on top of the protocol's settings.
BASELINE = ({"entropy_loss_weight": 0.0, "qpm_candidates": 0.0, "perturb_skips": False},
            {"strong_range": "unit", "ema_ramp": False, "loss_weights": "paper"})
FIXES = {
    "+range": ({}, {"strong_range": "sample"}),
    "+ramp": ({}, {"ema_ramp": True}),
    "+entropy": ({"entropy_loss_weight": 1.0}, {}),
    "+kernel": ({"qpm_candidates": 8.0}, {}),
    "+skips": ({"perturb_skips": True}, {}),
}
VARIANTS = {"defaults": ({}, {}), "paper-weights": ({}, {"loss_weights": "paper"}),
            # skip perturbation is off by default: this measures it against the defaults, for qpm and dropout alike
            "defaults+skips": ({"perturb_skips": True}, {}), "baseline": BASELINE,
            **{name: ({**BASELINE[0], **fix[0]}, {**BASELINE[1], **fix[1]}) for name, fix in FIXES.items()}}
COVERAGE_BIN = 50  # iterations per point of the coverage curve
CHECKPOINT_EVERY = 100


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


def model_config(protocol: dict, mode: str, variant: str = "defaults") -> VQSegConfig:
    return VQSegConfig(
        classes=ACDC_CLASSES, perturbation="qpm" if mode == "supervised" else mode,
        unet_base_width=protocol["base_width"], unet_depth=protocol["depth"],
        preprocessing=PreprocessingConfig(modality="mri", spacing_mm=protocol["spacing_mm"]),
        **VARIANTS[variant][0],
    )


def evaluate_model(model_dir: Path, data: Path, volumes: list[str], device: str, windows: tuple = (None,)) -> list[dict]:
    """Scores of a model folder on `volumes`, one dict per inference window in `windows` (None: the
    model's own window, 0: whole slices); the model and each volume are read once."""
    model, card = load_model(model_dir)
    per_volume = [{} for _ in windows]
    codes = [CodeStatistics.empty(model.quantizer.codebook_size) for _ in windows]
    for volume in volumes:
        image = sitk.ReadImage(str(data / "imagesVal" / f"{volume}.nii.gz"))
        label = sitk.Cast(sitk.ReadImage(str(data / "labelsVal" / f"{volume}.nii.gz")), sitk.sitkUInt8)
        for k, window in enumerate(windows):
            result = segment_volume(model, card, image, SegmentRequest(device=device, crop="none", window=window))
            codes[k].merge(result.codes)
            scores = image_metrics(result.labels, label, ACDC_CLASSES)
            per_volume[k][volume] = {name: {"dice": m.dice, "hd95": m.hd95_mm, "status": m.status} for name, m in scores.items()}
    return [_summary(v, c) for v, c in zip(per_volume, codes)]


def _summary(per_volume: dict, codes: CodeStatistics) -> dict:
    dice = [float(np.mean([c["dice"] for c in v.values()])) for v in per_volume.values()]
    hd95 = [float(np.nanmean([c["hd95"] for c in v.values()])) for v in per_volume.values()]
    per_class = {c.id: float(np.mean([v[c.id]["dice"] for v in per_volume.values()])) for c in ACDC_CLASSES.classes}
    failures = sum(c["status"] in ("missed", "false_positive") for v in per_volume.values() for c in v.values())
    fraction_used, perplexity = codebook_usage(torch.from_numpy(codes.counts))
    return {"dice": float(np.mean(dice)), "hd95_mm": float(np.nanmean(hd95)), "dice_per_class": per_class,
            "codebook_perplexity": float(perplexity), "codebook_fraction": float(fraction_used),
            "failures": failures, "per_volume": per_volume}


class _TimeRecorder:
    """A reporter that keeps the wall time of each training iteration, the teacher's confident coverage
    and QPM's effective candidates."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.coverage: dict[int, float] = {}
        self.candidates: dict[int, float] = {}

    def progress(self, stage, done, total, **extra):
        if stage == "train":
            self.stamps.append(time.perf_counter())
            self.coverage[extra["iteration"]] = extra.get("pseudo_coverage", 0.0)
            if "qpm_candidates" in extra:
                self.candidates[extra["iteration"]] = extra["qpm_candidates"]

    def coverage_curve(self) -> list[list[float]]:
        """[last iteration of the bin, mean coverage] per COVERAGE_BIN iterations (this process's iterations)."""
        bins: dict[int, list[float]] = {}
        for iteration, value in self.coverage.items():
            bins.setdefault((iteration - 1) // COVERAGE_BIN, []).append(value)
        return [[(b + 1) * COVERAGE_BIN, round(float(np.mean(v)), 4)] for b, v in sorted(bins.items())]

    def metric(self, **kwargs): pass
    def log(self, *args, **kwargs): pass


def run_folder(args, labelled: int, mode: str, seed: int, variant: str) -> Path:
    suffix = ("" if variant == "defaults" else "_" + variant.strip("+")) + (f"_{args.iterations}it" if args.iterations else "")
    return args.work / f"{args.protocol}_{labelled}_{mode}_{seed}{suffix}"


def rescore_code_usage(args, runs: list[dict], splits: dict) -> None:
    """Fill in the code-usage columns of runs recorded without them, from their kept last/ models."""
    for run in runs:
        last = run_folder(args, run["labelled_patients"], run["mode"], run["seed"], run["variant"]) / "last"
        if "codebook_perplexity" not in run and last.is_dir():
            (scores,) = evaluate_model(last, args.data, splits["val_volumes"], args.device)
            assert round(scores["dice"], 4) == run["dice"], f"{last} is not the model of this row"
            run.update(codebook_perplexity=round(scores["codebook_perplexity"], 1),
                       codebook_fraction=round(scores["codebook_fraction"], 4))


def run_one(args, protocol: dict, labelled: int, mode: str, seed: int, splits: dict, variant: str) -> dict:
    work = run_folder(args, labelled, mode, seed, variant)
    resume = checkpoint_folder(work) is not None and (work / "run.json").is_file() and not (work / "last").exists()
    if work.exists() and not resume:
        shutil.rmtree(work)
    spec = make_spec(args.data, splits["labeled_patients"][str(labelled)], args.work / "specs")
    recorder = _TimeRecorder()
    summary = train(
        spec, model_config(protocol, mode, variant), work, iterations=args.iterations or protocol["iterations"],
        batch_size=protocol["batch_size"], crop_size=protocol["crop_size"], lr=protocol["lr"], seed=seed,
        supervised_only=mode == "supervised", optimiser=protocol["optimiser"], device=args.device,
        validate_every=COVERAGE_BIN, checkpoint_every=CHECKPOINT_EVERY, reporter=recorder, cache_dir=args.work / "cache",
        step_options=VARIANTS[variant][1], resume=resume,
    )
    windowed, whole = evaluate_model(work / "last", args.data, splits["val_volumes"], args.device, windows=(None, 0))
    steps = np.diff(recorder.stamps[10:]) if len(recorder.stamps) > 12 else np.diff(recorder.stamps)
    return {
        "labelled_patients": labelled, "mode": mode, "seed": seed, "variant": variant, "iterations": summary["iterations"],
        "dice": round(windowed["dice"], 4), "hd95_mm": round(windowed["hd95_mm"], 2),
        **{f"dice_{k}": round(v, 4) for k, v in windowed["dice_per_class"].items()},
        "dice_whole_slice": round(whole["dice"], 4), "hd95_mm_whole_slice": round(whole["hd95_mm"], 2),
        "codebook_perplexity": round(windowed["codebook_perplexity"], 1), "codebook_fraction": round(windowed["codebook_fraction"], 4),
        "failures": windowed["failures"], "train_min": round(summary["elapsed_s"] / 60, 2), "resumed": resume,
        "s_per_iter_median": round(float(np.median(steps)), 4) if len(steps) else None,
        "coverage_curve": recorder.coverage_curve(),
        "qpm_candidates": sorted(recorder.candidates.items())[-1][1] if recorder.candidates else None,
        "per_volume": windowed["per_volume"], "per_volume_whole_slice": whole["per_volume"],
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
        for variant in VARIANTS:
            for mode in MODES:
                chosen = [r for r in runs if r["labelled_patients"] == labelled and r["mode"] == mode and r["variant"] == variant]
                if not chosen:
                    continue
                dice = [r["dice"] for r in chosen]
                covered = [r["coverage_curve"] for r in chosen if r.get("coverage_curve")]
                rows.append({
                    "labelled patients": labelled, "variant": variant, "mode": mode, "seeds": len(chosen),
                    "Dice mean": round(statistics.fmean(dice), 4),
                    "Dice SD": round(statistics.stdev(dice), 4) if len(dice) > 1 else "",
                    "Dice per seed": " / ".join(f"{d:.4f}" for d in dice),
                    "Dice whole slice": round(statistics.fmean(r["dice_whole_slice"] for r in chosen), 4),
                    "HD95 (mm)": round(statistics.fmean(r["hd95_mm"] for r in chosen), 2),
                    "code perplexity": round(statistics.fmean(r["codebook_perplexity"] for r in chosen), 1) if all(
                        "codebook_perplexity" in r for r in chosen) else "",
                    "RV / Myo / LV": " / ".join(f"{statistics.fmean(r[f'dice_{c.id}'] for r in chosen):.3f}" for c in ACDC_CLASSES.classes),
                    "coverage at 1/4 / 1/2 / end": " / ".join(
                        f"{statistics.fmean(_at_fraction(c, f) for c in covered):.2f}" for f in (0.25, 0.5, 1.0)) if covered and mode != "supervised" else "",
                    "train min": round(statistics.fmean(r["train_min"] for r in chosen), 1),
                })
    return rows


def _at_fraction(curve: list[list[float]], fraction: float) -> float:
    """The coverage of the bin that holds `fraction` of the run's iterations."""
    last = curve[-1][0]
    return next(value for end, value in curve if end >= fraction * last)


def _key(run: dict) -> tuple:
    return run["labelled_patients"], run["mode"], run["seed"], run["variant"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    parser.add_argument("--labelled", type=int, nargs="+", choices=(3, 7), default=[3, 7])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="defaults", help="settings on top of the protocol (see above)")
    parser.add_argument("--ablation", nargs="*", choices=["baseline", *FIXES], default=None, metavar="VARIANT",
                        help="the baseline and each single fix, or the variants named (results/acdc_<protocol>_ablation.*)")
    parser.add_argument("--iterations", type=int, default=None, help="override the protocol's iteration count")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vqseg-acdc"), help="scratch folder for runs and the cache")
    parser.add_argument("--timing-only", action="store_true", help="only the interleaved per-iteration timing")
    parser.add_argument("--timing-rounds", type=int, default=5)
    parser.add_argument("--timing-steps", type=int, default=6, help="steps per mode per round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--rescore", action="store_true", help="add code usage to recorded runs whose models are kept in --work")
    args = parser.parse_args()
    if not (args.data / "splits.json").is_file():
        print(f"no ACDC data at {args.data} (expected splits.json): pass --data", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    protocol = PROTOCOLS[args.protocol]
    ablation = args.ablation is not None
    # Another schedule is another table: results/acdc_cpu_1600it.* beside the protocol's own.
    name = f"acdc_{args.protocol}" + ("_ablation" if ablation else "") + (f"_{args.iterations}it" if args.iterations else "")
    variants = (args.ablation or ["baseline", *FIXES]) if ablation else [args.variant]
    result_path = args.out / f"{name}.json"
    previous = json.loads(result_path.read_text()) if result_path.is_file() else {}
    same_protocol = previous.get("protocol") == {**protocol, "spacing_mm": list(protocol["spacing_mm"])} and \
        previous.get("iterations_override") == args.iterations
    # Runs without a variant were measured before the method's fidelity fixes: they are not kept.
    current = same_protocol and "variants" in previous
    runs = [r for r in previous.get("runs", []) if current and "variant" in r]
    timing = previous.get("timing") if current else None
    splits = json.loads((args.data / "splits.json").read_text())
    command = "python benchmarks/acdc.py " + " ".join(sys.argv[1:])

    def save() -> None:
        # Another process may run other settings into the same file (e.g. 3 and 7 patients in parallel): merge.
        if result_path.is_file():
            on_disk = json.loads(result_path.read_text())
            if on_disk.get("protocol") == json.loads(json.dumps(protocol)) and on_disk.get("iterations_override") == args.iterations:
                mine = {_key(r) for r in runs}
                runs.extend(r for r in on_disk.get("runs", []) if "variant" in r and _key(r) not in mine)
        runs.sort(key=lambda r: (r["labelled_patients"], list(VARIANTS).index(r["variant"]), MODES.index(r["mode"]), r["seed"]))
        meta = {"protocol": protocol, "iterations_override": args.iterations, "command": command, "runs": runs,
                "timing": timing, "published": PUBLISHED,
                "variants": {name: {"config": v[0], "step_options": v[1]} for name, v in VARIANTS.items()},
                "evaluation": "final EMA teacher, 20 labelsVal volumes, 3D Dice/HD95 per class on the volume's grid, "
                              "mean of RV/Myo/LV per volume, then over volumes; 'dice' through vqseg segment's path (windows of "
                              "the training crop), 'dice_whole_slice' on whole slices; HD95 in mm with ACDC's spacing "
                              "recorded as 1 mm (= voxels)"}
        write_report(name, summary_table(runs), meta, args.out)
        if timing and not ablation:
            write_report(f"{name}_timing", timing, {"protocol": protocol, "command": command}, args.out)

    if args.rescore:
        rescore_code_usage(args, runs, splits)
        save()
        return 0
    # The ablation and other schedules share the main file's per-step timing.
    if args.timing_only or (not timing and not ablation and not args.iterations):
        timing = time_modes(args, protocol, args.timing_rounds, args.timing_steps)
        save()
        print(json.dumps(timing, indent=1), flush=True)
    if args.timing_only:
        return 0
    for seed in args.seeds:
        for labelled in args.labelled:
            for variant in variants:
                for mode in args.modes:
                    if any(_key(r) == (labelled, mode, seed, variant) for r in runs):
                        continue
                    row = run_one(args, protocol, labelled, mode, seed, splits, variant) | {
                        "command": command, "torch_threads": torch.get_num_threads()}
                    runs.append(row)
                    save()
                    print(json.dumps({k: v for k, v in row.items() if not k.startswith("per_volume")}), flush=True)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
