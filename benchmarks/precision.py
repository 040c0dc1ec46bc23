"""Mixed precision in training: seconds per step and the Dice it reaches, fp32 against bf16 (and fp16 on CUDA).

Speed: one semi-supervised QPM step at the ACDC CPU protocol's shape (batch 8 + 8, 64x64 crops,
U-Net width 16, depth 3), the precisions interleaved in rounds on the same batch.
Accuracy: the same short training run on synthetic chest CT phantoms in each precision (same seed,
same data), the EMA teacher's Dice on held-out phantoms.

    .venv/bin/python benchmarks/precision.py                 # CPU: writes results/precision_cpu.*
    python benchmarks/precision.py --device cuda             # GPU: writes results/precision_cuda.*
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from benchmarks.report import write_report  # noqa: E402
from VQSegCore.dataset_spec import DatasetSpec  # noqa: E402
from VQSegCore.model import VQSegConfig, build_model  # noqa: E402
from VQSegCore.model.config import PreprocessingConfig  # noqa: E402
from VQSegCore.synth import PhantomSpec, make_chest_ct  # noqa: E402
from VQSegCore.train import SemiSupervisedStep, make_teacher, train  # noqa: E402
from VQSegCore.compute import PRECISION_DTYPES, cpu_has_native_bf16  # noqa: E402

CONFIG = VQSegConfig(unet_base_width=16, unet_depth=3, preprocessing=PreprocessingConfig(spacing_mm=(2.0, 2.0)))


def time_steps(precisions: list[str], device: torch.device, rounds: int, per_round: int) -> dict[str, list[float]]:
    gen = torch.Generator().manual_seed(0)
    x_l = torch.rand(8, 1, 64, 64, generator=gen).to(device)
    y_l = torch.randint(0, 2, (8, 64, 64), generator=gen).to(device)
    x_u = torch.rand(8, 1, 64, 64, generator=gen).to(device)
    steps = {}
    for precision in precisions:
        torch.manual_seed(0)
        student = build_model(CONFIG).to(device)
        steps[precision] = SemiSupervisedStep(student, make_teacher(student), torch.optim.AdamW(student.parameters(), lr=1e-4),
                                              autocast_dtype=PRECISION_DTYPES[precision])
    samples: dict[str, list[float]] = {p: [] for p in precisions}
    for round_index in range(rounds + 1):
        for precision in precisions:
            generator = torch.Generator().manual_seed(round_index)
            for _ in range(per_round):
                started = time.perf_counter()
                steps[precision](x_l, y_l, x_u, generator=generator)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if round_index:
                    samples[precision].append(time.perf_counter() - started)
    return samples


def phantom_dataset(folder: Path) -> DatasetSpec:
    cases = []
    for index in range(8):
        split = "train" if index < 6 else "val"
        labelled = index in (0, 6, 7)
        phantom = make_chest_ct(PhantomSpec(size_xy=(128, 128), n_slices=24, spacing=(2.0, 2.0, 3.0), seed=index,
                                            tumour_diameter_mm=24 + 4 * (index % 3)))
        sitk.WriteImage(phantom.image, str(folder / f"{index}.nii.gz"))
        case = {"id": f"p{index}", "image": f"{index}.nii.gz", "split": split}
        if labelled:
            sitk.WriteImage(phantom.label, str(folder / f"{index}-label.nii.gz"))
            case["label"] = f"{index}-label.nii.gz"
        cases.append(case)
    (folder / "spec.json").write_text(json.dumps({"cases": cases}))
    return DatasetSpec.load(folder / "spec.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=300, help="training iterations of the accuracy runs")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per precision per round")
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    samples = time_steps(precisions, device, args.rounds, args.steps)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = phantom_dataset(Path(tmp))
        for precision in precisions:
            started = time.perf_counter()
            summary = train(spec, CONFIG, Path(tmp) / precision, iterations=args.iterations, batch_size=8, crop_size=64,
                            validate_every=args.iterations, device=args.device, precision=precision, seed=0)
            rows.append({
                "precision": precision,
                "s_per_step_median": round(statistics.median(samples[precision]), 4),
                "vs_fp32": round(statistics.median(samples[precision]) / statistics.median(samples["fp32"]), 3),
                "val_dice": round(summary["last_val_dice"], 4),
                "train_s": round(time.perf_counter() - started, 1),
            })
            print(rows[-1], flush=True)
    name = f"precision_{device.type}"
    write_report(name, rows, {
        "command": "python benchmarks/precision.py " + " ".join(sys.argv[1:]),
        "cpu_native_bf16": cpu_has_native_bf16(), "iterations": args.iterations,
        "setup": "QPM step, batch 8+8, 64x64, U-Net width 16 depth 3; accuracy: 6 train phantoms (1 labelled), 2 val phantoms",
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
