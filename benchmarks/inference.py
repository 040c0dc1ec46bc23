"""Inference speed and memory of the model that ships: `vqseg segment` end to end, each run in its own process.

Model: the shipped default (`Resources/Models/lung-lesion`, or `--model-dir`), at its own card's
spacing and field of view. Each measurement runs in its own process, so its peak RSS is its own
(os.wait4); wall time includes starting Python and importing torch:

    whole      a synthetic chest CT, 512x512x300 at 0.7x0.7x1.5 mm (`vqseg synth ... --seed 4`), no ROI
    ct_3mm     the real example CT of ../shared/data/ct (122x101x112 at 3 mm), no ROI: upsampled to the model grid
    roi        the synthetic CT with a 128x128x40 voxel ROI (90 x 90 x 60 mm)
    baseline   the procedure of the authors' released test script on the same model and the synthetic CT:
               the whole volume on the model grid, one slice per forward pass, fp32, autograd on,
               no crop, no channels-last; then the same resampling back and the same writer (--baseline)
    dinov2     the DINOv2 ViT-S/14 + DPT backbone (random weights) on a 256x256x40 volume (--dinov2)

Targets on 2 CPU cores: whole <= 30 s, ct_3mm <= 10 s, roi <= 2 s of work inside the ROI.

    .venv/bin/python benchmarks/inference.py [--baseline] [--dinov2]   # results/inference.json and .md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_report  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_measured(command: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GB, stdout) of one child process, reaped with os.wait4 for its own rusage.

    The child gets this environment plus `env`, with the repository in front of the caller's PYTHONPATH.
    """
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=ROOT,
                                   env={**os.environ, "PYTHONPATH": python_path, **(env or {})})
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024**2, out.read()


def last_result(stdout: str) -> dict:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e for e in events if e["event"] == "result"][-1]


# ---- workers (run in their own process) -------------------------------------------------------
def worker_make_model(folder: str, backbone: str) -> None:
    import torch

    from VQSegCore.model import VQSegConfig, build_model, save_model

    torch.manual_seed(0)
    save_model(build_model(VQSegConfig(backbone=backbone)), folder)


def worker_baseline(model_dir: str, image_path: str, output: str) -> None:
    """One slice per forward pass, fp32, autograd on, the whole image: the released test script's procedure."""
    import numpy as np
    import SimpleITK as sitk
    import torch

    from VQSegCore.io import read_volume
    from VQSegCore.io.write import write_label_map
    from VQSegCore.model import load_model
    from VQSegCore.preprocess import crop_from_padding, pad_to_multiple, probabilities_to_label, slice_stack, to_model_grid

    timings = {}
    started = time.perf_counter()
    model, _card = load_model(model_dir)
    image = read_volume(image_path).image
    timings["read"] = time.perf_counter() - started
    started = time.perf_counter()
    grid = to_model_grid(image, model.config.preprocessing)
    timings["preprocess"] = time.perf_counter() - started
    started = time.perf_counter()
    probabilities = np.empty((model.config.num_classes, *grid.array.shape), dtype=np.float32)
    context = model.config.preprocessing.context_slices
    for k in range(grid.array.shape[0]):
        stack = np.asarray(slice_stack(grid.array, k, context), dtype=np.float32)[None]  # [1, 2 context + 1, H, W]
        padded, padding = pad_to_multiple(stack, model.config.size_multiple, value=grid.background_value)
        logits = model(torch.from_numpy(np.ascontiguousarray(padded)), perturb=False, reconstruct=False).logits
        probabilities[:, k] = crop_from_padding(torch.softmax(logits, dim=1).detach().numpy(), padding)[0]
    timings["infer"] = time.perf_counter() - started
    started = time.perf_counter()
    labels = probabilities_to_label(probabilities, grid, labels=(0, *model.config.classes.values))
    timings["resample_back"] = time.perf_counter() - started
    started = time.perf_counter()
    write_label_map(sitk.GetArrayFromImage(labels), image, output, model.config.classes)
    timings["write"] = time.perf_counter() - started
    print(json.dumps({"event": "result", "timings_s": timings, "slices": int(grid.array.shape[0])}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "Resources" / "Models" / "lung-lesion")
    parser.add_argument("--ct", type=Path, default=ROOT.parent / "shared" / "data" / "ct" / "example_ct.nii.gz")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--baseline", action="store_true", help="also run the per-slice baseline (slow)")
    parser.add_argument("--dinov2", action="store_true", help="also time the DINOv2 backbone with random weights")
    args = parser.parse_args()
    if args.worker:
        {"model": worker_make_model, "baseline": worker_baseline}[args.worker[0]](*args.worker[1:])
        return 0

    python, rows = sys.executable, []
    card = json.loads((args.model_dir / "card.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ct = tmp / "ct.nii.gz"
        subprocess.run([python, "-m", "VQSegCore", "synth", str(ct), "--size", "512", "512", "--slices", str(args.slices),
                        "--spacing", "0.7", "0.7", "1.5", "--seed", "4"], check=True, cwd=ROOT, capture_output=True)

        def segment(name: str, image: Path, model_dir: Path, *extra: str) -> None:
            wall, rss, out = run_measured([python, "-m", "VQSegCore", "segment", str(image), "-o", str(tmp / f"{name}.nii.gz"),
                                           "--model-dir", str(model_dir), "--events", *extra])
            result = last_result(out)
            region = result["region"]
            slices = region["stop_ijk"][2] - region["start_ijk"][2]
            rows.append({"run": name, "wall_s": round(wall, 2), "peak_rss_gb": round(rss, 2), **_stages(result["timings_s"]),
                         "slices": slices, "slices_per_s_infer": round(result["slices_per_s"], 1),
                         "region": "x".join(str(b - a) for a, b in zip(region["start_ijk"], region["stop_ijk"])),
                         "precision": result["precision"]})
            print(rows[-1], flush=True)

        segment("whole_512x512x300", ct, args.model_dir)
        if args.ct.is_file():
            segment("ct_3mm_122x101x112", args.ct, args.model_dir)
        centre = (256, 256, args.slices // 2)
        segment("roi_128x128x40", ct, args.model_dir, "--roi-ijk", str(centre[0] - 64), str(centre[1] - 64), str(centre[2] - 20),
                str(centre[0] + 63), str(centre[1] + 63), str(centre[2] + 19))
        if args.baseline:
            wall, rss, out = run_measured([python, __file__, "--worker", "baseline", str(args.model_dir), str(ct), str(tmp / "base.nii.gz")])
            result = last_result(out)
            rows.append({"run": "baseline_per_slice", "wall_s": round(wall, 2), "peak_rss_gb": round(rss, 2),
                         **_stages(result["timings_s"]), "slices": result["slices"],
                         "slices_per_s_infer": round(result["slices"] / result["timings_s"]["infer"], 1), "region": "whole image",
                         "precision": "fp32"})
            print(rows[-1], flush=True)
        if args.dinov2:
            subprocess.run([python, __file__, "--worker", "model", str(tmp / "vit_dinov2"), "vit_dinov2"], check=True, cwd=ROOT)
            small = tmp / "small.nii.gz"
            subprocess.run([python, "-m", "VQSegCore", "synth", str(small), "--size", "256", "256", "--slices", "40",
                            "--spacing", "1.4", "1.4", "3", "--seed", "2"], check=True, cwd=ROOT, capture_output=True)
            segment("dinov2_dpt_256x256x40", small, tmp / "vit_dinov2")

    whole = rows[0]
    config = card["config"]
    meta = {
        "command": "python benchmarks/inference.py " + " ".join(sys.argv[1:]),
        "cpu_model": cpu_model(), "threads": os.cpu_count(),
        "model": {"folder": str(args.model_dir.relative_to(ROOT)) if args.model_dir.is_relative_to(ROOT) else str(args.model_dir),
                  "spacing_mm": config["preprocessing"].get("spacing_mm"), "inference_window": config.get("inference_window"),
                  "weights_sha256": card.get("weights_sha256")},
        "volume": f"synthetic chest CT 512x512x{args.slices}, 0.7x0.7x1.5 mm, seed 4",
        "targets": {"whole_wall_s": 30, "ct_3mm_wall_s": 10, "roi_work_s": 2},
    }
    baseline = next((r for r in rows if r["run"] == "baseline_per_slice"), None)
    if baseline:
        meta["speedup_vs_baseline_wall"] = round(baseline["wall_s"] / whole["wall_s"], 2)
    write_report("inference", rows, meta)
    return 0


def _stages(timings: dict) -> dict:
    return {f"{k}_s": round(v, 2) for k, v in timings.items() if k != "total"}


if __name__ == "__main__":
    sys.exit(main())
