"""Does inference depend on the field of view? Whole slices against sliding windows of the training crop size.

The default U-Net normalises with GroupNorm, whose statistics come from the whole input: a model
trained on small crops may segment differently when it sees a whole slice. This runs a trained
model on ACDC validation volumes both ways through the inference engine (SliceEngine with window 0
and with window N: MONAI sliding windows, Gaussian blending; same preprocessing, same resampling
back) and reports the mean Dice of RV / Myo / LV. With `--dataset lidc` it scores a lung model on
the LIDC validation patients (benchmarks/lidc.py's evaluation: `vqseg segment`'s path, with
--window 0 and N) and reports mean and median tumour Dice.

    .venv/bin/python benchmarks/field_of_view.py --model-dir /tmp/models/acdc3_qpm --window 64
    .venv/bin/python benchmarks/field_of_view.py --dataset lidc --model-dir Resources/Models/lung-lesion --window 96
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from benchmarks.acdc import DEFAULT_DATA  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from VQSegCore.infer.engine import SliceEngine  # noqa: E402
from VQSegCore.metrics import dice_score  # noqa: E402
from VQSegCore.model import load_model  # noqa: E402
from VQSegCore.preprocess import probabilities_to_label, to_model_grid  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--window", type=int, default=64, help="the training crop size")
    parser.add_argument("--dataset", choices=("acdc", "lidc"), default="acdc")
    parser.add_argument("--lidc-data", type=Path, default=None, help="LIDC crop set (default: benchmarks/lidc_data.py's)")
    args = parser.parse_args()
    if args.dataset == "lidc":
        return lidc_field_of_view(args)
    model, card = load_model(args.model_dir)
    config = model.config
    values = (0, *config.classes.values)
    splits = json.loads((args.data / "splits.json").read_text())
    scores: dict[str, list[float]] = {"whole slice": [], f"sliding window {args.window}x{args.window}": []}
    engines = [SliceEngine(model, torch.device("cpu"), precision="fp32", batch_size=8, window=window) for window in (0, args.window)]
    for volume in splits["val_volumes"][: args.volumes]:
        image = sitk.ReadImage(str(args.data / "imagesVal" / f"{volume}.nii.gz"))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(args.data / "labelsVal" / f"{volume}.nii.gz")))
        grid = to_model_grid(image, config.preprocessing)
        for name, engine in zip(scores, engines):
            probabilities = engine.run(grid.array, background=grid.background_value).probabilities
            labels = sitk.GetArrayFromImage(probabilities_to_label(probabilities, grid, labels=values, sums_to_one=True))
            scores[name].append(float(np.mean([dice_score(labels == v, truth == v) for v in config.classes.values])))
    rows = [{"inference": name, "volumes": len(s), "mean Dice": round(float(np.mean(s)), 4)} for name, s in scores.items()]
    write_report("field_of_view", rows, {"command": "python benchmarks/field_of_view.py " + " ".join(sys.argv[1:]),
                                          "model": str(args.model_dir), "norm": config.unet_norm, "per_volume": scores})
    for row in rows:
        print(row)
    return 0


def lidc_field_of_view(args) -> int:
    from benchmarks import lidc_data
    from benchmarks.lidc import evaluate_model
    from VQSegCore.dataset_spec import DatasetSpec

    data = args.lidc_data or lidc_data.DEFAULT_DATA
    cache = lidc_data.prepare(data)
    val = {p for p in lidc_data.patients(data) if lidc_data.is_validation_patient(p)}
    spec = DatasetSpec.load(lidc_data.write_spec(cache.parent / "lidc_val_only.json", cache, set(), set(), val, data))
    rows, per_case = [], {}
    for name, window in (("whole slice", 0), (f"sliding window {args.window}x{args.window}", args.window)):
        scores = evaluate_model(args.model_dir, spec, window=window)
        per_case[name] = {case: round(s["dice"], 4) for case, s in scores["per_case"].items()}
        rows.append({"inference": name, "cases": scores["cases"], "mean Dice": round(scores["dice"], 4),
                     "median Dice": round(scores["dice_median"], 4), "missed": scores["missed"]})
    write_report("field_of_view_lidc", rows, {"command": "python benchmarks/field_of_view.py " + " ".join(sys.argv[1:]),
                                               "model": str(args.model_dir), "per_case": per_case})
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
