"""Evaluate a `vqseg train` run on the LIDC validation patients and ship it as the default model.

The run is trained by (the spec from `benchmarks/lidc_data.py`: every training patient labelled,
validation patients as the val split):

    .venv/bin/python -c "from benchmarks import lidc_data as d; ..."   # see README, "Default model"
    vqseg train --dataset benchmarks/cache/lidc_default.json --out RUN --minutes 80 --crop-size 96 \\
        --context-slices 1 --spacing 0.7 0.7 --base-width 16 --depth 4 --batch-size 8 --validate-every 250

then this script scores RUN/<best|last> on every validation case (3D Dice and HD95 per case), copies
the weights into Resources/Models/lung-lesion/ and writes its card with the data, preprocessing,
intended use, metrics and the LIDC-IDRI attribution:

    .venv/bin/python benchmarks/lidc_default_model.py --run RUN [--which best]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import lidc_data  # noqa: E402
from benchmarks.lidc import evaluate_model  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from VQSegCore.atomic import write_json_atomic  # noqa: E402
from VQSegCore.dataset_spec import DatasetSpec  # noqa: E402
from VQSegCore.model.persistence import load_model, read_card  # noqa: E402
from VQSegCore.models.locate import DEFAULT_MODEL_NAME, shipped_models_dir  # noqa: E402

ATTRIBUTION = (
    "Trained on LIDC-IDRI (The Cancer Imaging Archive), licensed CC BY 3.0. Armato SG III et al., The Lung Image Database "
    "Consortium (LIDC) and Image Database Resource Initiative (IDRI): a completed reference database of lung nodules on CT "
    "scans. Med. Phys. 38:915-931, 2011. The authors acknowledge the National Cancer Institute and the Foundation for the "
    "National Institutes of Health, and their critical role in the creation of the free publicly available LIDC/IDRI "
    "Database used in this study."
)
INTENDED_USE = (
    "Research use only; not a medical device. Segmentation of a lung lesion (nodule or tumour) in chest CT in Hounsfield "
    "units, inside a region of interest placed around the lesion (as in the training crops: about 90 mm square). On a "
    "whole chest without an ROI it may mark vessels or other dense structures; correct the result in the Segment Editor."
)


def model_card_section(card: dict, scores: dict, spec: DatasetSpec) -> dict:
    patients = {case.id.split("_nodule-")[0] for case in spec.entries}
    val_patients = {case.id.split("_nodule-")[0] for case in spec.entries if case.split == "val"}
    return {
        "name": DEFAULT_MODEL_NAME,
        "description": "VQ-Seg U-Net (2.5D, one context slice each side) for lung lesions in CT.",
        "intended_use": INTENDED_USE,
        "data": {
            "source": "LIDC-IDRI nodule crops (128 x 128 axial crops centred on each nodule, consensus mask of >= 2 of 4 readers)",
            "patients": len(patients), "training_patients": len(patients - val_patients), "validation_patients": len(val_patients),
            "split": "by patient, sha256 of the patient id (20% validation)",
            "cases": len(spec.entries),
        },
        "preprocessing": {
            "intensity": f"8-bit crop values mapped to HU = {lidc_data.HU_SLOPE} v {lidc_data.HU_INTERCEPT:+.0f} (checked against "
                         "lung and soft-tissue peaks: benchmarks/results/lidc_intensity.md); the model's window is "
                         f"{card['config']['preprocessing']['hu_window']} HU",
            "spacing": f"the crops carry no spacing; {lidc_data.ASSUMED_SPACING_MM[0]} mm in-plane was assumed (typical for "
                       "LIDC-IDRI) and is the model's in-plane spacing: inputs are resampled to it",
        },
        "classes": card["config"]["classes"],
        "validation": {k: v for k, v in scores.items() if k != "per_case"},
        "limitations": [
            "Trained on crops around nodules: no whole-lung training context.",
            "Spacing of the training crops is assumed, so lesion size in mm is learnt only approximately.",
            "Trained on a CPU for a limited time (see training); far from the published LIDC state of the art (~0.83 Dice).",
        ],
        "licence_and_attribution": ATTRIBUTION,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the vqseg train output folder")
    parser.add_argument("--which", choices=("best", "last"), default="best")
    parser.add_argument("--out", type=Path, default=shipped_models_dir() / DEFAULT_MODEL_NAME)
    args = parser.parse_args()
    source = args.run / args.which
    card = read_card(source)
    load_model(source)  # refuses weights that don't match the card
    run = json.loads((args.run / "run.json").read_text())
    spec = DatasetSpec.load(run["dataset"])
    scores = evaluate_model(source, spec)
    card["model_card"] = model_card_section(card, scores, spec)
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "weights.safetensors", args.out / "weights.safetensors.tmp")
    (args.out / "weights.safetensors.tmp").replace(args.out / "weights.safetensors")
    write_json_atomic(args.out / "card.json", card)
    load_model(args.out)
    row = {"model": f"{DEFAULT_MODEL_NAME} ({args.which} of {args.run.name})", "iterations": card["training"].get("iterations_done"),
           "val cases": scores["cases"], "Dice mean": round(scores["dice"], 4), "Dice median": round(scores["dice_median"], 4),
           "HD95 median (mm)": None if scores["hd95_mm"] is None else round(scores["hd95_mm"], 2), "missed": scores["missed"]}
    write_report("lidc_default_model", [row], {"command": "python benchmarks/lidc_default_model.py " + " ".join(sys.argv[1:]),
                                               "per_case": scores["per_case"], "training": card["training"]})
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
